"""Privacy zones: polygons of a camera's picture that are hidden in every frame, whatever the
detector says (a street, a neighbour's garden). Pure: pixels in, pixels out.

Zones are given in fractions of the picture, so they hold when the resolution changes; their masks
are drawn once per frame size. A zone is hidden on top of everything else, including a frame
hidden whole while detection is stalled, so it never shows through a lighter hiding.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from ..config import FailMode, ZoneSettings
from .anonymizer import hide_all


class ZoneMasks:
    """The zones of one camera, made into a mask per mode for each frame size they meet."""

    def __init__(self, zones: tuple[ZoneSettings, ...] = ()) -> None:
        self.zones = zones
        self._masks: dict[tuple[int, int], dict[FailMode, _Mask]] = {}
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.zones)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels`` (written to) with every zone hidden."""
        if not self.zones:
            return pixels
        for mode, (mask, (top, bottom, left, right)) in self._for_size(pixels.shape[0], pixels.shape[1]).items():
            region = pixels[top:bottom, left:right]  # only the zones' bounding box is touched
            cv2.copyTo(hide_all(region, mode), mask, region)
        return pixels

    def _for_size(self, height: int, width: int) -> dict[FailMode, _Mask]:
        with self._lock:
            masks = self._masks.get((height, width))
            if masks is None:
                masks = self._masks[(height, width)] = _draw(self.zones, height, width)
            return masks


# A mode's mask (uint8, 1 inside), cut to its bounding box, and that box (top, bottom, left, right).
_Mask = tuple[np.ndarray, tuple[int, int, int, int]]


def _draw(zones: tuple[ZoneSettings, ...], height: int, width: int) -> dict[FailMode, _Mask]:
    canvases: dict[FailMode, np.ndarray] = {}
    for zone in zones:
        canvas = canvases.setdefault(zone.mode, np.zeros((height, width), np.uint8))
        corners = np.array([[x * width, y * height] for x, y in zone.points], np.float64)
        # Pixel centres inside the polygon, and every pixel its edge crosses: a zone never leaves a
        # sliver of what it covers at its border.
        polygon = np.round(corners * 16).astype(np.int32)
        cv2.fillPoly(canvas, [polygon], 1, lineType=cv2.LINE_8, shift=4)
        cv2.polylines(canvas, [polygon], True, 1, thickness=1, lineType=cv2.LINE_8, shift=4)
    masks: dict[FailMode, _Mask] = {}
    for mode, canvas in canvases.items():
        left, top, w, h = cv2.boundingRect(canvas)
        masks[mode] = (canvas[top:top + h, left:left + w].copy(), (top, top + h, left, left + w))
    return masks
