"""Detections of part of a frame: around the faces already known, and where the picture changed.

A whole-frame detection of a 1080p frame costs the live detector about 70 ms of CPU; most of that
frame is the same background as a moment ago. Between whole-frame detections, a camera is looked
at only where a face can be (a ``Look``):

- around each known face: a square window ``CONTEXT`` times its size (room for the motion since),
  windows that overlap joined, each shrunk so that the smallest face in it is about ``FACE_PX`` px
  across, the size the detectors find most reliably (large faces blurred by motion are often missed
  at full size). A window costs a few ms whatever the face's size (about 4 ms for one face in a
  1080p frame: ``bench/frame_costs.py``). A box that reaches a window's edge inside the frame is
  dropped: the face may go on past it, and the tracker keeps the face's whole known box rather
  than a part.
- in the areas where the picture changed since the camera's last whole-frame detection
  (``live/changes.py``), looked at as that detection looked at them: at the scale the detector gives
  the whole frame, so a face found there by a whole detection is found here too. A face the
  detector finds reaching an area's edge inside the frame makes the look incomplete (the face may
  go on outside the area, where nothing was looked for); its box is dropped when it is of a known
  face (the tracker keeps that face's whole box), kept when it is of a new one (its only cover).

Where two windows found the same face, it keeps the box around both (hiding more never leaks).

With the faces found on the last whole-frame detection among the known ones, a complete look has
looked everywhere a face not known can be: it answers for its frame as a whole detection does (see
``faces/tracking.py``). When the changes are not known (too much of the picture changed, or the
last whole-frame detection is over 2 s old), a look around the known faces alone only moves their
boxes: a face that has just come into view is found by the next whole-frame detection, and until
then (up to ``pipeline.whole_every_s``) it is not hidden. The scheduler makes such looks only
while cameras queue for the detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .detection import Detector, Face, clip_box, enclosing, iou
from .tracking import SAME_FACE_IOU

CONTEXT = 2.5  # a window's side, in sides of the face it is around
FACE_PX = 64  # px across a face is shrunk to in its window (never enlarged)
MIN_WINDOW_PX = 64  # windows are at least this wide and high (a tiny face still gets context)
MAX_WINDOW_PX = 640  # px across a window is shrunk to at most (a large joined window)
_DUPLICATE_IOU = 0.5  # boxes of two windows that overlap this much are one face

Area = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels (x1, y1 exclusive)


@dataclass(frozen=True, slots=True)
class Look:
    """Where to look on a frame instead of all of it."""

    faces: list[Face]  # known faces: a window around each
    areas: list[Area] = field(default_factory=list)  # where the picture changed since the last whole detection
    complete: bool = False  # ``areas`` hold every change (else they are not known: the look only follows faces)


def windows_around(faces: list[Face], width: int, height: int) -> list[Area]:
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
    return _joined(windows)


def detect_look(detector: Detector, image: np.ndarray, look: Look, threshold: float) -> tuple[list[Face], bool]:
    """The faces ``detector`` finds where ``look`` says (boxes in pixels of ``image``), and whether
    the look was complete: ``look.complete``, and no face found reaching the edge of a changed area
    inside the frame."""
    found = detect_around(detector, image, look.faces, threshold)
    height, width = image.shape[:2]
    complete = look.complete
    for area in _joined(list(look.areas)):
        inner = (area[0] > 0, area[1] > 0, area[2] < width, area[3] < height)
        for face in _detect_area(detector, image, area, threshold):
            if not _cut_off(face.box, area, inner):
                found.append(face)
                continue
            complete = False
            # Part of a face: of a known one, the tracker keeps its whole known box (this part must
            # not replace it); a face not known yet has no other cover, and the next look has a
            # window around this part to find all of it.
            if not any(iou(face.box, known.box) >= SAME_FACE_IOU for known in look.faces):
                found.append(face)
    return _distinct(found), complete


def detect_around(detector: Detector, image: np.ndarray, faces: list[Face], threshold: float) -> list[Face]:
    """The faces ``detector`` finds in windows around ``faces`` (boxes in pixels of ``image``)."""
    height, width = image.shape[:2]
    found = []
    for x0, y0, x1, y1 in windows_around(faces, width, height):
        window = image[y0:y1, x0:x1, :3]
        inside = [f for f in faces if _centre_in(f, x0, y0, x1, y1)]
        # The smallest face of the window sets the shrink (a joined window may hold faces of
        # several sizes), as far as the window stays within MAX_WINDOW_PX.
        face_px = min((max(f.box[2], f.box[3]) for f in inside), default=FACE_PX)
        factor = min(1.0, FACE_PX / face_px, MAX_WINDOW_PX / max(x1 - x0, y1 - y0))
        if factor < 1.0:
            size = (max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor)))
            window = cv2.resize(window, size, interpolation=cv2.INTER_AREA)
        else:
            window = np.ascontiguousarray(window)
        sx, sy = (x1 - x0) / window.shape[1], (y1 - y0) / window.shape[0]
        inner = (x0 > 0, y0 > 0, x1 < width, y1 < height)  # window edges inside the frame
        for face in detector.detect(window, threshold):
            x, y, w, h = face.box
            box = (x0 + x * sx, y0 + y * sy, w * sx, h * sy)
            if not _cut_off(box, (x0, y0, x1, y1), inner):
                found.append(Face(box, face.score))
    return found


def _detect_area(detector: Detector, image: np.ndarray, area: Area, threshold: float) -> list[Face]:
    """Faces in ``area`` of ``image`` as a whole-frame detection finds them there. A detector that
    resizes an image by its size says how (CenterFace's ``detect_area``); others see the part as it is."""
    detect_area = getattr(detector, "detect_area", None)
    if detect_area is not None:
        return detect_area(image, area, threshold)
    x0, y0, x1, y1 = area
    return [face.shifted(x0, y0) for face in detector.detect(np.ascontiguousarray(image[y0:y1, x0:x1, :3]), threshold)]


def _distinct(faces: list[Face]) -> list[Face]:
    """One box per face where windows overlapped: boxes that overlap much become the box around
    them, scored as the best."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: f.score, reverse=True):
        same = next((i for i, other in enumerate(kept) if iou(face.box, other.box) >= _DUPLICATE_IOU), None)
        if same is None:
            kept.append(face)
        else:
            kept[same] = enclosing(kept[same], face)
    return kept


def _joined(windows: list[Area]) -> list[Area]:
    """The windows, overlapping ones joined into the box around both until none overlap."""
    joined = True
    while joined:  # few windows: quadratic is fine
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


def _cut_off(box: tuple[float, float, float, float], window: tuple[int, int, int, int], inner: tuple) -> bool:
    """True for a box that reaches an edge of its window inside the frame: the face may go on past
    it, and the box would hide only part of it (the face stays held where it was known instead)."""
    x, y, w, h = box
    x0, y0, x1, y1 = window
    left, top, right, bottom = inner
    return (left and x <= x0 + 1) or (top and y <= y0 + 1) or (right and x + w >= x1 - 1) or (bottom and y + h >= y1 - 1)


def _centre_in(face: Face, x0: int, y0: int, x1: int, y1: int) -> bool:
    x, y, w, h = face.box
    return x0 <= x + w / 2 < x1 and y0 <= y + h / 2 < y1
