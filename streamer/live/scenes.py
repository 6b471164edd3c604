"""Scene cuts: a camera's picture that changed all at once (a switched input, a PTZ preset jump,
lights turned on, an edited video played as a camera).

Faces known before a cut say nothing of the picture after it, and detections around them (see
``faces/focus.py``) would look in the wrong places. A cut is told by the grey-level histogram of a
thumbnail: motion moves pixels but keeps most of their histogram, a new scene changes it. On the
motion benchmark's clips (pans, zooms and shake over photos), frames within a shot differ by at
most 0.11 (the share of the thumbnail's pixels that changed histogram bin, in net) and cuts by
0.20-0.74. The pipeline then asks for a whole-frame detection at once, and frames from the cut on
wait for it (or are hidden whole). A missed cut costs what it did before: new faces are found by
the next whole-frame detection.
"""

from __future__ import annotations

import numpy as np

THUMB_PX = 64  # samples across a thumbnail
BINS = 16
CUT_CHANGE = 0.15  # histogram change (total variation distance, 0-1) from one frame to the next that is a cut


class SceneCuts:
    """Fed every frame of one camera in order, from one thread."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None

    def cut(self, pixels: np.ndarray) -> bool:
        """True when this frame starts a new scene (never for the first frame: nothing was known)."""
        height, width = pixels.shape[:2]
        step = max(1, max(width, height) // THUMB_PX)
        thumb = pixels[::step, ::step, :3].mean(axis=2, dtype=np.float32)
        histogram = np.histogram(thumb, bins=BINS, range=(0, 256))[0] / thumb.size
        previous, self._previous = self._previous, histogram
        if previous is None:
            return False
        return float(np.abs(histogram - previous).sum()) / 2 > CUT_CHANGE
