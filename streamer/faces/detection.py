"""What a face detector is to the rest of streamer: RGB pixels in, scored boxes in pixels out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


@dataclass(frozen=True, slots=True)
class Face:
    """One detected face: ``box`` is ``(x, y, w, h)`` in pixels of the image given to the detector."""

    box: tuple[float, float, float, float]
    score: float

    def shifted(self, dx: float, dy: float) -> Face:
        """The same face in an image whose origin is (-dx, -dy) from this one's (a part's box in the whole)."""
        x, y, w, h = self.box
        return Face((x + dx, y + dy, w, h), self.score)


class Detector(Protocol):
    """A face detector backend. Instances are not shared between threads."""

    name: str

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        """Faces scoring at least ``threshold`` in an RGB ``uint8`` image of shape (H, W, 3)."""
        ...

    def close(self) -> None:
        """Free the model; the detector is unusable afterwards."""
        ...


def clip_box(x: float, y: float, w: float, h: float, width: int, height: int) -> tuple[float, float, float, float]:
    """The part of a box that lies inside a ``width`` x ``height`` image."""
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    return (x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))


def enclosing(a: Face, b: Face) -> Face:
    """One face whose box encloses both boxes, scored as the better of the two."""
    x0, y0 = min(a.box[0], b.box[0]), min(a.box[1], b.box[1])
    x1 = max(a.box[0] + a.box[2], b.box[0] + b.box[2])
    y1 = max(a.box[1] + a.box[3], b.box[1] + b.box[3])
    return Face((x0, y0, x1 - x0, y1 - y0), max(a.score, b.score))


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def ious(a: Sequence[Face], b: Sequence[Face]) -> np.ndarray:
    """Intersection over union of every box of ``a`` (rows) with every box of ``b`` (columns)."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    first, second = np.array([f.box for f in a]), np.array([f.box for f in b]).T
    iw = np.minimum(first[:, :1] + first[:, 2:3], second[:1] + second[2:3]) - np.maximum(first[:, :1], second[:1])
    ih = np.minimum(first[:, 1:2] + first[:, 3:4], second[1:2] + second[3:4]) - np.maximum(first[:, 1:2], second[1:2])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = first[:, 2:3] * first[:, 3:4] + second[2:3] * second[3:4] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
