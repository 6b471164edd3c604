"""Detections of part of a frame: the windows looked at around known faces and in changed areas,
and boxes mapped back to the frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import read_rgb
from streamer.config import LiveDetectorSettings
from streamer.faces.detection import Face, iou
from streamer.faces.detectors import create_detector
from streamer.faces.focus import CONTEXT, FACE_PX, MAX_WINDOW_PX, Look, detect_around, detect_look, windows_around


class Recorder:
    """Finds one face in the middle of every window it is given, and remembers their sizes."""

    name = "recorder"

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        h, w = image.shape[:2]
        self.sizes.append((w, h))
        return [Face((w * 0.4, h * 0.4, w * 0.2, h * 0.2), 0.9)]

    def close(self) -> None:
        pass


def test_overlapping_windows_are_joined_and_clipped_to_the_frame():
    near = [Face((100, 100, 40, 40), 0.9), Face((150, 100, 40, 40), 0.9)]
    far = Face((600, 300, 40, 40), 0.9)
    windows = windows_around([*near, far], 640, 360)
    assert len(windows) == 2
    joined, alone = sorted(windows)
    assert joined[0] <= 100 - 20 and joined[2] >= 190 + 20  # both faces with room around them
    assert alone[2] == 640 and alone[3] == 360  # clipped


def test_a_large_face_is_looked_at_shrunk_and_its_box_comes_back_in_frame_pixels():
    frame = np.zeros((1080, 1920, 3), np.uint8)
    face = Face((800, 300, 300, 300), 0.9)
    detector = Recorder()
    found = detect_around(detector, frame, [face], 0.5)
    (w, h), = detector.sizes
    assert max(w, h) <= round(FACE_PX * CONTEXT) + 1  # not the 750 px window at full size
    (box,) = [f.box for f in found]
    side = 300 * CONTEXT
    assert abs(box[0] - (950 - side / 2 + side * 0.4)) < 4 and abs(box[2] - side * 0.2) < 4
    assert abs(box[1] - (450 - side / 2 + side * 0.4)) < 4 and abs(box[3] - side * 0.2) < 4


class EdgeFinder(Recorder):
    """Finds a face running off the window's left edge, and one inside it."""

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        h, w = image.shape[:2]
        return [Face((0, h * 0.4, w * 0.2, h * 0.2), 0.9), Face((w * 0.5, h * 0.4, w * 0.2, h * 0.2), 0.8)]


def test_a_box_cut_off_by_a_window_edge_inside_the_frame_is_dropped():
    frame = np.zeros((720, 1280, 3), np.uint8)
    inside = detect_around(EdgeFinder(), frame, [Face((600, 300, 40, 40), 0.9)], 0.5)
    assert [f.score for f in inside] == [0.8]  # the other may be part of a face that goes on past the edge
    at_border = detect_around(EdgeFinder(), frame, [Face((0, 300, 40, 40), 0.9)], 0.5)
    assert len(at_border) == 2  # the frame's own edge: nothing goes on past it


def test_a_small_face_next_to_a_large_one_is_not_shrunk_out_of_sight():
    frame = np.zeros((1080, 1920, 3), np.uint8)
    detector = Recorder()
    detect_around(detector, frame, [Face((800, 300, 300, 300), 0.9), Face((1120, 420, 30, 30), 0.9)], 0.5)
    (w, h), = detector.sizes  # one window around both, shrunk for the small face: only to the size cap
    assert w == MAX_WINDOW_PX  # for the large face alone it would be 160 px, the small one 6 px tall


def test_a_changed_area_is_looked_at_as_it_is_and_answers_for_the_frame():
    frame = np.zeros((720, 1280, 3), np.uint8)
    detector = Recorder()
    found, complete = detect_look(detector, frame, Look([], [(100, 200, 300, 260)], complete=True), 0.5)
    assert detector.sizes == [(200, 60)]  # a detector without detect_area sees the part as it is
    (box,) = [f.box for f in found]
    assert box == (180.0, 224.0, 40.0, 12.0)
    assert complete


def test_a_face_reaching_a_changed_area_s_edge_leaves_the_look_incomplete():
    frame = np.zeros((720, 1280, 3), np.uint8)
    area = (400, 200, 600, 400)  # EdgeFinder: a face at (400, 280, 40, 40) cut off, one at (500, 280, 40, 40)
    found, complete = detect_look(EdgeFinder(), frame, Look([], [area], complete=True), 0.5)
    assert len(found) == 2 and not complete  # the face may go on where nothing was looked for...
    known = Face((390, 275, 60, 50), 0.9)
    found, complete = detect_look(EdgeFinder(), frame, Look([known], [area], complete=True), 0.5)
    assert (400.0, 280.0, 40.0, 40.0) not in [f.box for f in found] and not complete  # ...part of a known face
    found, complete = detect_look(EdgeFinder(), frame, Look([], [(0, 200, 200, 400)], complete=True), 0.5)
    assert len(found) == 2 and complete  # the frame's own edge
    found, complete = detect_look(Recorder(), frame, Look([], [(100, 200, 300, 260)]), 0.5)
    assert found and not complete  # a look whose changes are not known follows faces only


def test_a_face_found_both_around_it_and_in_a_changed_area_gives_one_box_around_both():
    frame = np.zeros((720, 1280, 3), np.uint8)
    face = Face((480, 280, 40, 40), 0.9)
    x0, y0, x1, y1 = windows_around([face], 1280, 720)[0]  # the Recorder finds its face in the middle of each
    area = (x0 + 2, y0 + 2, x1 + 2, y1 + 2)
    found, complete = detect_look(Recorder(), frame, Look([face], [area], complete=True), 0.5)
    (box,) = [f.box for f in found]
    assert (x0, y0, x1, y1) == (450, 250, 550, 350) and complete
    assert box == (490.0, 290.0, 22.0, 22.0)  # (490, 290, 20, 20) around it, (492, 292, 20, 20) in the area


@pytest.fixture(scope="module")
def realtime():
    detector = create_detector(LiveDetectorSettings())
    yield detector
    detector.close()


def test_centerface_finds_in_an_area_the_faces_it_finds_there_in_the_whole_frame(realtime, faces_dev):
    images = [entry for entry in faces_dev if len(entry["faces"]) >= 3][:5]
    compared = 0
    for entry in images:
        frame = cv2.resize(read_rgb(entry), (1920, 1080))
        for face in realtime.detect(frame, 0.5):
            x, y, w, h = face.box
            area = (max(0, int(x - w)), max(0, int(y - h)), min(1920, int(x + 2 * w)), min(1080, int(y + 2 * h)))
            again = realtime.detect_area(frame, area, 0.3)
            assert max((iou(face.box, f.box) for f in again), default=0) >= 0.7, (entry["file"], face)
            compared += 1
    assert compared >= 10
