"""Detections around known faces: the windows looked at, and boxes mapped back to the frame."""

from __future__ import annotations

import numpy as np

from streamer.faces.detection import Face
from streamer.faces.focus import CONTEXT, FACE_PX, detect_around, windows_around


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
