"""Carrying face boxes across frames, so a face the detector loses for a moment stays hidden.

Detections arrive at the detector's own pace, tagged with the capture time of the frame they were
made on. A face keeps its box for ``hold_s`` after it was last seen; a box matched again is
replaced by the new one. The pipeline asks for the boxes that hold at a frame's capture time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .detection import Face, iou

_SAME_FACE_IOU = 0.3


@dataclass(slots=True)
class Track:
    face: Face
    first_seen: float
    last_seen: float


class Tracker:
    """Thread-safe: the detector thread updates, the anonymizer thread reads."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._tracks: list[Track] = []
        self._last_detection: float | None = None
        self._lock = threading.Lock()

    @property
    def last_detection(self) -> float | None:
        """Capture time of the newest frame the detector has finished, or None before the first."""
        return self._last_detection

    def update(self, captured: float, faces: list[Face]) -> None:
        """Record the faces found on the frame captured at ``captured``."""
        with self._lock:
            unmatched = list(self._tracks)
            for face in sorted(faces, key=lambda f: f.score, reverse=True):
                best = max(unmatched, key=lambda t: iou(t.face.box, face.box), default=None)
                if best is not None and iou(best.face.box, face.box) >= _SAME_FACE_IOU:
                    unmatched.remove(best)
                    best.face, best.last_seen = face, max(best.last_seen, captured)
                else:
                    self._tracks.append(Track(face, captured, captured))
            self._tracks = [t for t in self._tracks if t.last_seen >= captured - self.hold_s]
            self._last_detection = captured if self._last_detection is None else max(self._last_detection, captured)

    def faces_at(self, captured: float) -> list[Face] | None:
        """Faces to hide on a frame captured at ``captured``; None when detection is too stale to trust."""
        with self._lock:
            if self._last_detection is None or self._last_detection < captured - self.hold_s:
                return None
            return [t.face for t in self._tracks if t.last_seen >= captured - self.hold_s]
