"""Detections around faces already known: a cheap look at where they are now.

A full-frame detection of a 1080p frame costs the live detector about 60 ms; most of that frame is
the same background as a moment ago. Between full passes, a camera with faces in view can be
looked at only around them: each known face gives a square window ``CONTEXT`` times its size
(room for the motion since), windows that overlap are joined, and each is shrunk so that the face
in it is about ``FACE_PX`` px across, the size the detectors find most reliably (large faces blurred
by motion are often missed at full size). A window costs a few ms whatever the face's size.

This only refreshes faces the caller already knows. A face that has just come into view is found by
the next full pass, which the scheduler keeps at a guaranteed rate (``live/scheduler.py``).
"""

from __future__ import annotations

import cv2
import numpy as np

from .detection import Detector, Face, clip_box

CONTEXT = 2.5  # a window's side, in sides of the face it is around
FACE_PX = 64  # px across a face is shrunk to in its window (never enlarged)
MIN_WINDOW_PX = 64  # windows are at least this wide and high (a tiny face still gets context)


def windows_around(faces: list[Face], width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Windows (x0, y0, x1, y1; x1, y1 exclusive) covering each face with context, overlapping
    ones joined into the box around both, clipped to the image."""
    windows = []
    for face in faces:
        x, y, w, h = face.box
        side = max(w, h, 1.0) * CONTEXT
        side = max(side, MIN_WINDOW_PX)
        cx, cy = x + w / 2, y + h / 2
        x0, y0, cw, ch = clip_box(cx - side / 2, cy - side / 2, side, side, width, height)
        if cw >= 1 and ch >= 1:
            windows.append((int(x0), int(y0), int(np.ceil(x0 + cw)), int(np.ceil(y0 + ch))))
    joined = True
    while joined:  # join until no two overlap (few windows: quadratic is fine)
        joined = False
        for i in range(len(windows)):
            for j in range(i + 1, len(windows)):
                a, b = windows[i], windows[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    windows[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del windows[j]
                    joined = True
                    break
            if joined:
                break
    return windows


def detect_around(detector: Detector, image: np.ndarray, faces: list[Face], threshold: float) -> list[Face]:
    """The faces ``detector`` finds in windows around ``faces`` (boxes in pixels of ``image``)."""
    height, width = image.shape[:2]
    found = []
    for x0, y0, x1, y1 in windows_around(faces, width, height):
        window = image[y0:y1, x0:x1, :3]
        inside = [f for f in faces if _centre_in(f, x0, y0, x1, y1)]
        face_px = max((max(f.box[2], f.box[3]) for f in inside), default=FACE_PX)
        factor = min(1.0, FACE_PX / face_px)
        if factor < 1.0:
            size = (max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor)))
            window = cv2.resize(window, size, interpolation=cv2.INTER_AREA)
        else:
            window = np.ascontiguousarray(window)
        sx, sy = (x1 - x0) / window.shape[1], (y1 - y0) / window.shape[0]
        for face in detector.detect(window, threshold):
            x, y, w, h = face.box
            found.append(Face((x0 + x * sx, y0 + y * sy, w * sx, h * sy), face.score))
    return found


def _centre_in(face: Face, x0: int, y0: int, x1: int, y1: int) -> bool:
    x, y, w, h = face.box
    return x0 <= x + w / 2 < x1 and y0 <= y + h / 2 < y1
