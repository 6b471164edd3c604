import time

import numpy as np
import pytest

from streamer.config import CameraSettings
from streamer.live.sources import CLOCK_BITS, SourceError, SourceKind, frames, redact, source_kind


def test_sources_are_told_apart():
    assert source_kind("rtsp://cam.local/stream1") is SourceKind.rtsp
    assert source_kind("/dev/video0") is SourceKind.v4l2
    assert source_kind("clips/lobby.mp4") is SourceKind.file
    assert source_kind("pattern://640x360@30") is SourceKind.pattern


def test_passwords_never_show():
    assert redact("rtsp://admin:hunter2@10.0.0.5:554/live") == "rtsp://admin:***@10.0.0.5:554/live"
    assert redact("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"


def read_clock(pixels: np.ndarray) -> int:
    """The capture time (epoch ms, low 32 bits) that a pattern frame carries in its top stripe."""
    width = pixels.shape[1]
    row = pixels[2, :, 0]
    bits = [int(row[int((bit + 0.5) * width / CLOCK_BITS)] > 127) for bit in range(CLOCK_BITS)]
    return int("".join(map(str, bits)), 2)


def test_pattern_camera_stamps_its_capture_time_and_keeps_its_rate():
    source = frames(CameraSettings(name="clock", source="pattern://320x180@20"), 1, 1)
    started = time.monotonic()
    shots = [next(source) for _ in range(11)]
    assert time.monotonic() - started >= 0.45  # paced: ten intervals at 20 fps
    for shot in shots:
        now = int(time.time() * 1000) & 0xFFFFFFFF
        assert 0 <= (now - read_clock(shot.pixels)) % 2**32 < 2000
    assert [s.index for s in shots] == list(range(11))


def test_bad_pattern_is_a_source_error():
    with pytest.raises(SourceError, match="WIDTHxHEIGHT"):
        next(frames(CameraSettings(name="clock", source="pattern://big"), 1, 1))
