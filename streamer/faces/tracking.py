"""Carrying face boxes across frames, so a face the detector loses for a moment stays hidden.

Detections arrive at the detector's own pace, tagged with the capture time of the frame they were
made on. A face keeps its box for ``hold_s`` after it was last seen; a box matched again is
replaced by the new one. The pipeline asks for the boxes that hold at a frame's capture time.

A frame the detector did not see itself lies between two detections. When the later one is already
known (the pipeline waits a little for it, see ``wait_for``), each face is hidden by one box around
both its earlier and its later box: wherever it was in between, it is covered, even when it moved
fast or the camera jumped. A face first seen on a later frame is hidden on the frames just before too.

Times need not be seconds: video files use frame numbers, so that gaps in their timestamps do not
end a face's hold. What the tracker has forgotten it never answers for: a frame asked about after
the detections around it were pruned gets ``None`` (hide it whole), never "no faces".

A detection may also have looked only at part of the frame (see ``focus.py``). When it looked
everywhere a face not known could be (around the known faces and where the picture changed since
a whole-frame detection), it is complete and counts as a whole one does; otherwise
(``complete=False``) it moves and refreshes the boxes it found, but says nothing of the rest of the
picture. Only complete detections count for the answer "these are all the faces" (``hold_s``).
After a scene cut (``cut``), only complete detections made since count for frames from then on,
and the faces known before it are not where to look any more (``current``).
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, field

from .detection import Face, enclosing, iou

SAME_FACE_IOU = 0.3  # a box overlapping a known face's this much is of that face


@dataclass(slots=True)
class Track:
    face: Face  # the newest box
    first_seen: float
    last_seen: float
    seen: list[tuple[float, Face]] = field(default_factory=list)  # (capture time, box), oldest first


class Tracker:
    """Thread-safe: the detector thread updates, the anonymizer thread reads."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._tracks: list[Track] = []
        self._last_detection: float | None = None
        self._detected: list[float] = []  # capture times of the frames detected, ascending
        self._complete: list[float] = []  # those of them detected completely, ascending
        self._cuts: list[float] = []  # capture times of frames that began a new scene, ascending
        self._found: dict[float, list[Face]] = {}  # the faces found on each of those frames
        self._forgotten_before = -math.inf  # detections older than this have been pruned
        self._lock = threading.Lock()
        self._updated = threading.Condition(self._lock)

    @property
    def last_detection(self) -> float | None:
        """Capture time of the newest frame the detector has finished, or None before the first."""
        return self._last_detection

    def update(self, captured: float, faces: list[Face], complete: bool = True) -> None:
        """Record the faces found on the frame captured at ``captured``: every face on it, or
        (``complete`` False) those found on the part of it that was looked at."""
        with self._lock:
            unmatched = list(self._tracks)
            for face in sorted(faces, key=lambda f: f.score, reverse=True):
                best = max(unmatched, key=lambda t: iou(t.face.box, face.box), default=None)
                if best is not None and iou(best.face.box, face.box) >= SAME_FACE_IOU:
                    unmatched.remove(best)
                    if captured >= best.last_seen:
                        best.face, best.last_seen = face, captured
                    best.seen.append((captured, face))
                    best.seen.sort(key=lambda item: item[0])
                else:
                    self._tracks.append(Track(face, captured, captured, [(captured, face)]))
            # Forget what no query can use any more. Frames are asked about after later detections
            # came in (the pipeline's wait, a video's look-ahead), and ``faces_at`` applies the hold
            # itself, so a track is kept for two hold times, not one: pruning at one would end a
            # face's hold early on every frame older than the newest detection.
            horizon = captured - 2 * self.hold_s
            self._forgotten_before = max(self._forgotten_before, horizon)
            insort(self._detected, captured)
            if complete:
                insort(self._complete, captured)
            self._found[captured] = faces
            for old in self._detected[: bisect_left(self._detected, horizon)]:
                self._found.pop(old, None)
            del self._detected[: bisect_left(self._detected, horizon)]
            del self._complete[: bisect_left(self._complete, horizon)]
            del self._cuts[: max(0, bisect_left(self._cuts, horizon) - 1)]  # the newest before it still counts
            self._tracks = [t for t in self._tracks if t.last_seen >= horizon]
            for track in self._tracks:
                track.seen = [item for item in track.seen if item[0] >= horizon]
            self._last_detection = captured if self._last_detection is None else max(self._last_detection, captured)
            self._updated.notify_all()

    def cut(self, captured: float) -> None:
        """The frame captured at ``captured`` began a new scene."""
        with self._lock:
            insort(self._cuts, captured)

    def current(self) -> list[Face] | None:
        """The newest box of every face still held after the newest detection; None after a scene
        cut that no complete detection has looked at yet (the faces known are of another scene)."""
        with self._lock:
            if self._cuts and not (self._complete and self._complete[-1] >= self._cuts[-1]):
                return None
            if self._last_detection is None:
                return []
            return [t.face for t in self._tracks if t.last_seen >= self._last_detection - self.hold_s]

    def _answered(self, captured: float) -> bool:
        """Complete detections count for the frame captured at ``captured``: one at or within
        ``hold_s`` before it and not before a scene cut that came before the frame; or, when such a
        cut came within ``hold_s`` before the frame and no complete detection since, the first one
        after the frame, within ``hold_s`` (the faces of the new scene were most likely there)."""
        newest_before = bisect_right(self._complete, captured) - 1
        cut_index = bisect_right(self._cuts, captured) - 1
        cut = self._cuts[cut_index] if cut_index >= 0 else -math.inf
        if newest_before >= 0 and self._complete[newest_before] >= max(captured - self.hold_s, cut):
            return True
        if cut < captured - self.hold_s:
            return False
        first_after = newest_before + 1
        return first_after < len(self._complete) and self._complete[first_after] <= captured + self.hold_s

    def wait_for(self, captured: float, deadline: float) -> bool:
        """Wait until a frame captured at or after ``captured`` is detected, and complete detections
        answer for this one (see ``faces_at``), or the monotonic clock reaches ``deadline``; True
        if they do. A stalled detector costs each frame at most the time left until its
        deadline, so a backlog of frames is never held up twice."""
        with self._lock:
            while self._last_detection is None or self._last_detection < captured or not self._answered(captured):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._updated.wait(left)
            return True

    def found_on(self, captured: float) -> list[Face] | None:
        """The faces the detector found on the frame captured at ``captured``; None when that frame
        was not detected (or is forgotten)."""
        with self._lock:
            return self._found.get(captured)

    def faces_at(self, captured: float) -> list[Face] | None:
        """Faces to hide on a frame captured at ``captured``; None when they are not known: no frame
        detected completely at or within ``hold_s`` before it (a later detection alone does not say the
        face was not there yet), none since a scene cut before it (except, within ``hold_s`` of the
        cut, the first complete detection after the frame), or the detections it needs already pruned
        (the frame is far older than the newest detection).

        Each face held at that time gives one box: around its box from the newest detection at or
        before ``captured`` and, unless that detection was of this very frame, its box from the
        first one after it (detections later than ``captured`` by more than ``hold_s`` are not used).
        """
        with self._lock:
            if not self._answered(captured):
                return None
            if captured - self.hold_s < self._forgotten_before:
                return None
            faces = []
            for track in self._tracks:
                before = [item for item in track.seen if item[0] <= captured]
                after = [item for item in track.seen if captured < item[0] <= captured + self.hold_s]
                held = before[-1] if before and before[-1][0] >= captured - self.hold_s else None
                if held is not None and (held[0] == captured or not after):
                    faces.append(held[1])
                elif after:
                    faces.append(after[0][1] if held is None else enclosing(held[1], after[0][1]))
            return faces

