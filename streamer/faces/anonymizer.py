"""Hide detected faces: blur, pixelate or fill a padded box or ellipse around each one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np

from ..config import AnonymizerSettings, FailMode, Mode, Shape
from .detection import Face

# Blurs are done on a copy shrunk until the Gaussian's sigma is this many pixels, then enlarged:
# the same look as a full-size Gaussian, at a cost that does not grow with the face.
_SMALL_SIGMA = 2.0
# A frame hidden whole keeps this many cells across its longer side: light and motion, no faces.
_WHOLE_FRAME_CELLS = 24
_SAMPLES_PER_CELL = 8  # across a cell, for its average


@dataclass(frozen=True, slots=True)
class Region:
    """The pixels hidden for one face: a padded box clipped to the image (x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def padded_box(face: Face, settings: AnonymizerSettings) -> tuple[float, float, float, float]:
    """The face's box grown ``padding`` times (x0, y0, x1, y1): as much left as right, and
    ``padding_below`` of the added height below it (detectors frame the forehead more than the
    chin or a mask)."""
    x, y, w, h = face.box
    grow_w, grow_h = w * (settings.padding - 1), h * (settings.padding - 1)
    below = grow_h * settings.padding_below
    return (x - grow_w / 2, y - (grow_h - below), x + w + grow_w / 2, y + h + below)


def region_for(face: Face, settings: AnonymizerSettings, width: int, height: int) -> Region | None:
    """The padded region of a face, or None when nothing of it lies inside the image."""
    left, top, right, bottom = padded_box(face, settings)
    x0, y0 = max(0, int(np.floor(left))), max(0, int(np.floor(top)))
    x1, y1 = min(width, int(np.ceil(right))), min(height, int(np.ceil(bottom)))
    if x1 <= x0 or y1 <= y0:
        return None
    return Region(x0, y0, x1, y1)


def _ellipse(face: Face, settings: AnonymizerSettings) -> tuple[float, float, float, float]:
    """Centre and half axes of the ellipse inscribed in the face's padded box."""
    left, top, right, bottom = padded_box(face, settings)
    return (left + right) / 2, (top + bottom) / 2, max((right - left) / 2, 0.5), max((bottom - top) / 2, 0.5)


def _ellipse_mask(face: Face, region: Region, settings: AnonymizerSettings) -> np.ndarray:
    """Boolean mask over ``region`` of the ellipse inscribed in the face's padded (unclipped) box."""
    cx, cy, rx, ry = _ellipse(face, settings)
    ys, xs = np.ogrid[region.y0 : region.y1, region.x0 : region.x1]
    return ((xs + 0.5 - cx) / rx) ** 2 + ((ys + 0.5 - cy) / ry) ** 2 <= 1.0


def hide_all(pixels: np.ndarray, mode: FailMode) -> np.ndarray:
    """A new frame with nothing recognisable left: heavily blurred, or black."""
    if mode is FailMode.black:
        return np.zeros_like(pixels)
    h, w = pixels.shape[:2]
    scale = _WHOLE_FRAME_CELLS / max(w, h)
    # Every few pixels are enough to average a cell (a shrink over all of them cost a 1080p frame
    # 7 ms, more than anonymizing it does: hiding whole must not be what overloads a busy machine).
    step = max(1, max(w, h) // (_WHOLE_FRAME_CELLS * _SAMPLES_PER_CELL))
    sampled = np.ascontiguousarray(pixels[::step, ::step])
    small = cv2.resize(sampled, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def coverage_mask(faces: Iterable[Face], width: int, height: int, settings: AnonymizerSettings) -> np.ndarray:
    """Boolean (H, W) mask of every pixel the anonymizer hides for these faces."""
    mask = np.zeros((height, width), dtype=bool)
    for face in faces:
        region = region_for(face, settings, width, height)
        if region is None:
            continue
        window = mask[region.y0 : region.y1, region.x0 : region.x1]
        if settings.shape is Shape.ellipse:
            window |= _ellipse_mask(face, region, settings)
        else:
            window[:] = True
    return mask


class Anonymizer:
    """Applies one ``AnonymizerSettings`` to images, in place."""

    def __init__(self, settings: AnonymizerSettings) -> None:
        self.settings = settings

    def apply(self, image: np.ndarray, faces: Iterable[Face]) -> np.ndarray:
        """Hide ``faces`` in an RGB or RGBA ``uint8`` image (alpha is left alone); returns ``image``."""
        s = self.settings
        height, width = image.shape[:2]
        for face in faces:
            region = region_for(face, s, width, height)
            if region is None:
                continue
            window = image[region.y0 : region.y1, region.x0 : region.x1, :3]
            hidden = self._hide(np.ascontiguousarray(window))
            if s.shape is Shape.ellipse:
                np.copyto(window, hidden, where=_ellipse_mask(face, region, s)[:, :, None])
            else:
                window[:] = hidden
            if s.audit:
                self._outline(image, face, region)
        return image

    def _hide(self, pixels: np.ndarray) -> np.ndarray:
        s = self.settings
        h, w = pixels.shape[:2]
        if s.mode is Mode.fill:
            return np.broadcast_to(np.array(s.fill_color, dtype=np.uint8), pixels.shape)
        if s.mode is Mode.pixelate:
            scale = s.pixelate_blocks / max(w, h)
            small = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
            return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        sigma = s.blur_strength * max(w, h) / 3
        if sigma <= _SMALL_SIGMA:
            return cv2.GaussianBlur(pixels, (0, 0), sigma)
        scale = _SMALL_SIGMA / sigma
        small = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), _SMALL_SIGMA, borderType=cv2.BORDER_REPLICATE)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    def _outline(self, image: np.ndarray, face: Face, region: Region) -> None:
        s = self.settings
        color = tuple(int(c) for c in s.audit_color) + ((255,) if image.shape[2] == 4 else ())
        thickness = max(1, round(max(region.width, region.height) / 60))
        if s.shape is Shape.ellipse:
            cx, cy, rx, ry = _ellipse(face, s)
            cv2.ellipse(image, (round(cx), round(cy)), (max(1, round(rx)), max(1, round(ry))), 0, 0, 360, color,
                        thickness, cv2.LINE_AA)
        else:
            cv2.rectangle(image, (region.x0, region.y0), (region.x1 - 1, region.y1 - 1), color, thickness)
