"""Where a camera's picture changed since its last whole-frame detection.

A face that was in view on the frame last detected whole was found there (or missed, as it would be
again on the same pixels); a face that came into view since changed the pixels where it is now. So
a detection that looks where the picture changed since the last whole one, and around every face
known (``faces/focus.py``), looks everywhere a new face can be: it answers for its frame as a whole
one does, at the cost of the changed part. Most security cameras watch a still scene: a few people
walking change a tenth of it.

The picture is compared as a grid of cells, ``CELLS`` across its longer side (30 px at 1080p), each
the mean grey level of a sample of its pixels, against the grid of the reference frame (not of the
frame before: a change too slow to see from one frame to the next still adds up). A cell whose mean
moved by ``CHANGE`` grey levels or more has changed; changed cells grow by ``MARGIN_CELLS`` each side
(a face whose edge matched its background) and join into areas. When more than ``MAX_CHANGED`` of the
picture has changed (the camera moved, the lights changed, a crowd), a look at the changes would
cost nearly what a whole-frame detection does: the changes are not given, and the camera's looks
only follow its known faces until its next whole-frame detection. So too when the reference is over
``MAX_AGE_S`` old (whole-frame detections failing, or spaced out further by ``whole_every_s``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from ..faces.detection import Face

CELLS = 64  # grid cells across the picture's longer side
_SAMPLES_PER_CELL = 4  # pixels sampled across a cell for its mean
CHANGE = 10.0  # grey levels (0-255) a cell's mean moves by that count as a change
MARGIN_CELLS = 1  # changed cells grow by this many each side
MAX_CHANGED = 0.1  # share of the picture changed (grown cells) past which no changes are given
# A reference older than this gives no changes either: whole detections are failing or starved,
# and looks must not go on answering from an ever older one.
MAX_AGE_S = 2.0

Area = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels (x1, y1 exclusive)


def grid(pixels: np.ndarray) -> np.ndarray:
    """The picture's cells: mean grey levels, float32, ``CELLS`` across its longer side."""
    height, width = pixels.shape[:2]
    cell = max(1, max(width, height) // CELLS)
    step = max(1, cell // _SAMPLES_PER_CELL)
    sampled = np.ascontiguousarray(pixels[::step, ::step, :3])
    grey = cv2.cvtColor(sampled, cv2.COLOR_RGB2GRAY)
    size = (max(1, width // cell), max(1, height // cell))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Reference:
    """The frame detected whole that changes are measured from."""

    captured: float
    cells: np.ndarray
    size: tuple[int, int]  # the picture's width and height
    faces: list[Face]  # what that detection found


class Changes:
    """One camera's reference frame; thread-safe (the detector threads set and read it)."""

    def __init__(self) -> None:
        self._reference: Reference | None = None
        self._lock = threading.Lock()

    def detected_whole(self, pixels: np.ndarray, captured: float, faces: list[Face]) -> None:
        """The frame captured at ``captured`` was detected whole (and ``faces`` found on it): changes
        are measured from it, unless a later frame already is the reference."""
        height, width = pixels.shape[:2]
        reference = Reference(captured, grid(pixels), (width, height), list(faces))
        with self._lock:
            if self._reference is None or captured >= self._reference.captured:
                self._reference = reference

    def since(self, pixels: np.ndarray, captured: float) -> tuple[list[Area], list[Face]] | None:
        """The areas where ``pixels`` (captured at ``captured``) changed since the reference frame,
        and the faces found on that frame; None when there is no reference (or one of another size,
        or over ``MAX_AGE_S`` older) or too much has changed."""
        with self._lock:
            reference = self._reference
        height, width = pixels.shape[:2]
        if reference is None or reference.size != (width, height) or captured - reference.captured > MAX_AGE_S:
            return None
        cells = grid(pixels)
        changed = (np.abs(cells - reference.cells) >= CHANGE).astype(np.uint8)
        if MARGIN_CELLS:
            changed = cv2.dilate(changed, np.ones((2 * MARGIN_CELLS + 1,) * 2, np.uint8))
        if changed.mean() > MAX_CHANGED:
            return None
        count, _, stats, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
        rows, cols = cells.shape
        sx, sy = width / cols, height / rows  # the grid's cells in pixels (within a few: the margin covers it)
        areas = []
        for left, top, w, h, _ in stats[1:count]:
            x0, y0 = int(left * sx), int(top * sy)
            x1 = width if left + w >= cols else int(np.ceil((left + w) * sx))
            y1 = height if top + h >= rows else int(np.ceil((top + h) * sy))
            areas.append((x0, y0, x1, y1))
        return areas, reference.faces
