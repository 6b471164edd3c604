"""Scene cuts on the motion benchmark's kind of picture: a photo panned and shaken, then another."""

from __future__ import annotations

import cv2
import numpy as np

from conftest import FACES_DEV
from streamer.live.scenes import SceneCuts


def _photo(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(FACES_DEV / "images" / name)), cv2.COLOR_BGR2RGB)


def test_a_cut_is_told_from_panning_and_shake():
    photos = sorted(p.name for p in (FACES_DEV / "images").iterdir())[:2]
    first, second = (cv2.resize(_photo(name), (1600, 900)) for name in photos)
    cuts = SceneCuts()
    frames = [first[10 + (i * 7) % 23 : 730 + (i * 7) % 23, 5 * i : 5 * i + 1280] for i in range(30)]
    frames += [second[:720, :1280]]
    told = [cuts.cut(np.ascontiguousarray(frame)) for frame in frames]
    assert told == [False] * 30 + [True]
