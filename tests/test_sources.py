import time

import numpy as np
import pytest

from streamer.config import CameraSettings
from streamer.live.sources import CLOCK_BITS, SourceError, SourceKind, frames, source_kind
from streamer.redact import redact


def test_sources_are_told_apart():
    assert source_kind("rtsp://cam.local/stream1") is SourceKind.rtsp
    assert source_kind("/dev/video0") is SourceKind.v4l2
    assert source_kind("clips/lobby.mp4") is SourceKind.file
    assert source_kind("pattern://640x360@30") is SourceKind.pattern


@pytest.mark.parametrize("text, shown", [
    ("rtsp://admin:hunter2@10.0.0.5:554/live", "rtsp://***@10.0.0.5:554/live"),
    ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
    ("rtsp://admin:hunt@r2@cam/live", "rtsp://***@cam/live"),  # a password with "@" in it
    ("rtsp://me@corp.example:hunter2@cam/live", "rtsp://***@cam/live"),  # a user name with "@" in it
    ("rtsp://Zm9vYmFy@cam/live", "rtsp://***@cam/live"),  # a token as the user name
    ("rtsps://cam/live?user=admin&password=hunter2&channel=1", "rtsps://cam/live?user=admin&password=***&channel=1"),
    ("rtsp://cam/live?token=abc123", "rtsp://cam/live?token=***"),
    ("open rtsp://u:hunter2@cam/x failed: Connection refused", "open rtsp://***@cam/x failed: Connection refused"),
    ("clips/lobby.mp4", "clips/lobby.mp4"),
])
def test_passwords_never_show(text, shown):
    assert redact(text) == shown


def test_a_source_of_another_scheme_is_refused_when_the_config_loads_without_its_password():
    with pytest.raises(ValueError, match=r"http:// is not a camera source") as refused:
        CameraSettings(name="door", source="http://admin:hunter2@cam/video.cgi")
    assert "hunter2" not in str(refused.value.errors()[0]["msg"])


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

