"""Where a camera's picture changed since its last whole-frame detection, on real photos."""

from __future__ import annotations

import cv2
import numpy as np

from conftest import read_rgb
from streamer.faces.detection import Face
from streamer.live.changes import MAX_AGE_S, Changes


def _scene(faces_dev, index: int) -> np.ndarray:
    return cv2.resize(read_rgb(faces_dev[index]), (1280, 720), interpolation=cv2.INTER_AREA)


def test_nothing_is_known_before_a_whole_detection_or_at_another_size(faces_dev):
    changes = Changes()
    scene = _scene(faces_dev, 0)
    assert changes.since(scene, 0.5) is None
    changes.detected_whole(scene, 1.0, [])
    assert changes.since(cv2.resize(scene, (640, 360)), 1.1) is None


def test_a_still_picture_with_sensor_noise_has_not_changed(faces_dev):
    changes = Changes()
    scene = _scene(faces_dev, 0)
    face = Face((10, 20, 30, 40), 0.9)
    changes.detected_whole(scene, 1.0, [face])
    noise = np.random.default_rng(1).integers(-6, 7, scene.shape)
    noisy = np.clip(scene.astype(int) + noise, 0, 255).astype(np.uint8)
    assert changes.since(noisy, 1.1) == ([], [face])  # nowhere to look but at the faces found then


def test_a_face_that_came_into_view_is_inside_one_changed_area(faces_dev):
    changes = Changes()
    scene = _scene(faces_dev, 0)
    changes.detected_whole(scene, 1.0, [])
    arrived = scene.copy()
    person = _scene(faces_dev, 5)[200:320, 400:490]  # a 90 x 120 patch of another photo
    arrived[500:620, 900:990] = person
    areas, _ = changes.since(arrived, 1.1)
    assert len(areas) == 1
    x0, y0, x1, y1 = areas[0]
    assert x0 <= 900 and y0 <= 500 and x1 >= 990 and y1 >= 620  # all of it, with a margin
    assert (x1 - x0) * (y1 - y0) < 0.05 * 1280 * 720  # and not much more


def test_changes_add_up_from_the_reference_not_from_the_frame_before(faces_dev):
    changes = Changes()
    scene = _scene(faces_dev, 0)
    changes.detected_whole(scene, 1.0, [])
    darker = scene.copy()
    for step in range(1, 6):  # 3 grey levels a frame: too little from one frame to the next
        darker[100:200, 100:200] = np.clip(scene[100:200, 100:200].astype(int) - 3 * step, 0, 255)
        areas, _ = changes.since(darker, 1.0 + step / 30)
    assert len(areas) == 1


def test_a_camera_that_moved_has_changed_too_much_to_look_at_parts(faces_dev):
    changes = Changes()
    scene = _scene(faces_dev, 0)
    changes.detected_whole(scene, 1.0, [])
    panned = np.ascontiguousarray(np.roll(scene, 40, axis=1))
    assert changes.since(panned, 1.1) is None


def test_an_older_whole_detection_does_not_replace_a_newer_reference(faces_dev):
    changes = Changes()
    old, new = _scene(faces_dev, 0), _scene(faces_dev, 1)
    changes.detected_whole(new, 2.0, [])
    changes.detected_whole(old, 1.0, [])  # finished later, on an earlier frame
    assert changes.since(new, 2.1) == ([], [])


def test_an_old_reference_gives_no_changes(faces_dev):
    changes = Changes()
    scene = _scene(faces_dev, 0)
    changes.detected_whole(scene, 1.0, [])
    assert changes.since(scene, 1.0 + MAX_AGE_S) == ([], [])
    assert changes.since(scene, 1.1 + MAX_AGE_S) is None  # whole detections are failing: no looks that answer
