"""Boxes that follow their faces between detections, and for a while after the detector loses them.

A detection says where a face was on one frame. The tracker (``tracking.py``) holds that box where
it was; on a moving camera, or for a person walking, the face leaves it. The follower moves each
box with its face: it picks trackable points inside the box on the frame the face was detected on
and follows them into every later frame with pyramidal Lucas-Kanade optical flow, on a grey copy
of the frame about ``WIDTH`` px wide. A point counts only when following it back lands within
``MAX_BACK_PX`` of where it started; the box moves by the median shift of the points and grows or
shrinks with their spread. A new detection of the face puts the box (and fresh points) where the
detector says.

A face the detector stops seeing (turned, masked, blurred by motion) stays followed for
``follow_s``, or until too few of its points can be followed (it left the picture or was covered):
then only the tracker's hold covers it, where it was last seen. Following adds boxes and never
removes any: it can only hide more.

Times are those of the tracker: seconds for live cameras, frame numbers for video files. One
follower serves one camera or video, from one thread, frame after frame in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .detection import Face, clip_box, iou

WIDTH = 640  # px across of the grey copy the points are followed on
MAX_POINTS = 30  # points picked in a box
MIN_POINTS = 3  # a box with fewer followable points is given up
MAX_BACK_PX = 1.0  # forward-backward error a point may have, in px of the grey copy
MAX_SCALE_STEP = 1.25  # most a box may grow (or 1/x shrink) from one frame to the next
_SAME_FACE_IOU = 0.3  # a detection this close to a followed box is the same face
_DUPLICATE_IOU = 0.5  # a lost box this close to a detected one follows the same face: dropped
_FLOW = dict(winSize=(11, 11), maxLevel=2, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03))


@dataclass(slots=True)
class _Followed:
    face: Face  # in pixels of the full frame
    points: np.ndarray  # (N, 1, 2) float32, in pixels of the grey copy
    seen: float  # when the detector last saw this face


class Follower:
    def __init__(self, follow_s: float) -> None:
        self.follow_s = follow_s
        self._followed: list[_Followed] = []
        self._previous: np.ndarray | None = None  # the grey copy of the last frame
        self._factor = 1.0  # grey copy px per frame px

    @property
    def faces(self) -> list[Face]:
        """Where the followed faces were on the newest frame (safe to read from another thread)."""
        return [followed.face for followed in self._followed]

    def step(
        self, pixels: np.ndarray, at: float, detected: list[Face] | None,
        grey: tuple[np.ndarray, float] | None = None,
    ) -> list[Face]:
        """Follow every box into this frame (RGB, taken at ``at``) and return where they are now.
        ``detected``: the faces the detector found on this very frame, or None when it did not
        look at it; ``grey``: the frame's ``grey_copy`` when the caller has made it already."""
        if self.follow_s <= 0 or not (self._followed or detected):
            self._previous = None  # nothing to follow: no need of this frame later
            return []
        copy, self._factor = grey if grey is not None else grey_copy(pixels)
        if self._previous is not None and self._previous.shape != copy.shape:
            self._followed = []  # a new picture size: a reconnected camera, nothing to follow
        if self._followed and self._previous is not None:
            self._move(self._previous, copy, pixels.shape[1], pixels.shape[0], at)
        if detected:
            self._anchor(copy, detected, at)
        self._previous = copy
        return self.faces

    def _move(self, previous: np.ndarray, grey: np.ndarray, width: int, height: int, at: float) -> None:
        start = np.concatenate([followed.points for followed in self._followed])
        ahead, good = _flow(previous, grey, start)
        kept, first = [], 0
        for followed in self._followed:
            last = first + len(followed.points)
            mask = good[first:last]
            before, after = start[first:last][mask].reshape(-1, 2), ahead[first:last][mask].reshape(-1, 2)
            first = last
            if len(before) < MIN_POINTS or at - followed.seen > self.follow_s:
                continue
            box = _moved(followed.face.box, before, after, self._factor)
            clipped = clip_box(*box, width, height)
            if clipped[2] * clipped[3] <= 0:
                continue  # mostly out of the picture: it left
            followed.face = Face(box, followed.face.score)
            followed.points = after.reshape(-1, 1, 2)
            kept.append(followed)
        self._followed = kept

    def _anchor(self, grey: np.ndarray, detected: list[Face], at: float) -> None:
        """Put boxes where the detector found faces on this frame, with fresh points."""
        lost = list(self._followed)
        anchored = []
        for face in sorted(detected, key=lambda f: f.score, reverse=True):
            best = max(lost, key=lambda f: iou(f.face.box, face.box), default=None)
            if best is not None and iou(best.face.box, face.box) >= _SAME_FACE_IOU:
                lost.remove(best)
            points = _points(grey, face.box, self._factor)
            if points is not None:
                anchored.append(_Followed(face, points, at))
        lost = [f for f in lost if all(iou(f.face.box, a.face.box) < _DUPLICATE_IOU for a in anchored)]
        self._followed = anchored + lost


def grey_copy(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """The grey copy of an RGB frame that points are followed on, and its px per frame px."""
    height, width = pixels.shape[:2]
    factor = min(1.0, WIDTH / width)
    grey = cv2.cvtColor(np.ascontiguousarray(pixels[:, :, :3]), cv2.COLOR_RGB2GRAY)  # first: a third to shrink
    if factor < 1.0:
        size = (round(width * factor), max(1, round(height * factor)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey, factor


def follow_back(greys: Iterable[np.ndarray], factor: float, face: Face, width: int, height: int) -> Iterator[Face]:
    """Where ``face``, found on the frame of the first of ``greys``, was on each earlier frame of
    the rest (grey copies ``factor`` times the frames' size, newest first), for as long as its
    points can be followed back and the picture keeps its size."""
    greys = iter(greys)
    later = next(greys, None)
    points = None if later is None else _points(later, face.box, factor)
    if points is None:
        return
    box = face.box
    for earlier in greys:
        if earlier.shape != later.shape:
            return  # another picture size: a stream that changed resolution, nothing to follow
        ahead, good = _flow(later, earlier, points)
        if good.sum() < MIN_POINTS:
            return
        box = _moved(box, points[good].reshape(-1, 2), ahead[good].reshape(-1, 2), factor)
        clipped = clip_box(*box, width, height)
        if clipped[2] * clipped[3] <= 0:
            return  # it came from outside the picture
        points, later = ahead[good].reshape(-1, 1, 2), earlier
        yield Face(box, face.score)


def _flow(previous: np.ndarray, grey: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the points ``start`` of ``previous`` are in ``grey``, and which of them to trust:
    found both ways, and followed back to within ``MAX_BACK_PX`` of where they started."""
    ahead, found, _ = cv2.calcOpticalFlowPyrLK(previous, grey, start, None, **_FLOW)
    back, found_back, _ = cv2.calcOpticalFlowPyrLK(grey, previous, ahead, None, **_FLOW)
    good = (found.ravel() == 1) & (found_back.ravel() == 1)
    good &= np.linalg.norm((back - start).reshape(-1, 2), axis=1) < MAX_BACK_PX
    return ahead, good


def _moved(box: tuple[float, float, float, float], before: np.ndarray, after: np.ndarray, factor: float):
    """``box`` shifted by the points' median motion and scaled by the change of their spread
    (points in px of a grey copy ``factor`` times the frame's size)."""
    shift = np.median(after - before, axis=0) / factor
    spread_before = np.linalg.norm(before - before.mean(axis=0), axis=1).mean()
    spread_after = np.linalg.norm(after - after.mean(axis=0), axis=1).mean()
    scale = 1.0
    if spread_before > 1.0:
        scale = float(np.clip(spread_after / spread_before, 1 / MAX_SCALE_STEP, MAX_SCALE_STEP))
    x, y, w, h = box
    cx, cy = x + w / 2 + float(shift[0]), y + h / 2 + float(shift[1])
    return (cx - w * scale / 2, cy - h * scale / 2, w * scale, h * scale)


def _points(grey: np.ndarray, box: tuple[float, float, float, float], factor: float) -> np.ndarray | None:
    """Points to follow inside ``box``: corners where there are enough, else a 5x5 grid."""
    x, y, w, h = (v * factor for v in box)
    x0, y0 = max(0, int(x)), max(0, int(y))
    x1, y1 = min(grey.shape[1], int(np.ceil(x + w))), min(grey.shape[0], int(np.ceil(y + h)))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    corners = cv2.goodFeaturesToTrack(grey[y0:y1, x0:x1], MAX_POINTS, 0.01, max(2.0, min(x1 - x0, y1 - y0) / 8))
    if corners is not None and len(corners) >= 2 * MIN_POINTS:
        return (corners.reshape(-1, 1, 2) + np.array([x0, y0], np.float32)).astype(np.float32)
    xs, ys = np.meshgrid(np.linspace(x0 + 1, x1 - 2, 5), np.linspace(y0 + 1, y1 - 2, 5))
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32).reshape(-1, 1, 2)
