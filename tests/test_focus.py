"""Detections around known faces: the windows looked at, and boxes mapped back to the frame."""

from __future__ import annotations

import numpy as np

from streamer.faces.detection import Face
from streamer.faces.focus import CONTEXT, FACE_PX, MAX_WINDOW_PX, detect_around, windows_around


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
