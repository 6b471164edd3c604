"""Small image measurements the tests share."""

from __future__ import annotations

import cv2
import numpy as np


def sharpness(pixels: np.ndarray) -> float:
    """High-frequency energy: variance of the Laplacian of the grey image."""
    grey = cv2.cvtColor(np.ascontiguousarray(pixels[:, :, :3]), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def crop(pixels: np.ndarray, box: list | tuple) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in box)
    return pixels[max(0, y) : y + h, max(0, x) : x + w]


def detail_kept(before: np.ndarray, after: np.ndarray) -> float:
    """Correlation of the fine detail (image minus its blur) of two crops: 1 unchanged, ~0 gone.

    Measured on the inner 80% so the edge of an ellipse or a mosaic's block edges, which are
    new detail rather than the face's, do not count.
    """
    h, w = before.shape[:2]
    inner = (slice(h // 10, h - h // 10), slice(w // 10, w - w // 10))

    def fine(pixels: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(np.ascontiguousarray(pixels[:, :, :3]), cv2.COLOR_RGB2GRAY).astype(np.float64)
        return (grey - cv2.GaussianBlur(grey, (0, 0), 2))[inner].ravel()

    a, b = fine(before), fine(after)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom else 0.0
