"""The local RTSP camera that the live-video tests use: it streams, loops, and comes back after a restart."""

from __future__ import annotations

import time
from pathlib import Path

import av
import pytest

from clips import SINGLE_FACE, make_clip
from rtsp import rtsp_servers  # noqa: F401  (fixture)

CLIP_SECONDS = 2  # short, so that decoding 75 frames crosses the loop point


def decode(url: str, frames: int, timeout: float = 10) -> tuple[list[float | None], float]:
    """Frame times (s) of the first ``frames`` frames of ``url``, and the seconds it took from opening.

    FFmpeg gives the very first frame of an RTSP stream no timestamp (None).
    """
    started = time.monotonic()
    container = av.open(url, options={"rtsp_transport": "tcp"}, timeout=timeout)
    try:
        times: list[float | None] = []
        for frame in container.decode(video=0):
            times.append(frame.time)
            if len(times) >= frames or time.monotonic() - started > timeout:
                break
        return times, time.monotonic() - started
    finally:
        container.close()


def test_rtsp_server_streams_loops_and_restarts(rtsp_servers, tmp_path: Path) -> None:
    clip = make_clip(SINGLE_FACE, tmp_path / "clips", seconds=CLIP_SECONDS, width=640, height=360, fps=30)
    server = rtsp_servers({"cam": clip})
    assert server.url("cam") == f"rtsp://127.0.0.1:{server.port}/cam"

    times, took = decode(server.url("cam"), 75)
    assert len(times) >= 30, f"{len(times)} frames in {took:.1f} s; server log:\n{server.log()}"
    assert took < 10
    # 75 frames cross the end of the 2 s clip: the loop goes on with rising timestamps...
    assert len(times) == 75
    stamped = [t for t in times if t is not None]
    assert len(stamped) >= 73, times
    assert all(b > a for a, b in zip(stamped, stamped[1:])), times
    assert stamped[-1] - stamped[0] == pytest.approx((len(stamped) - 1) / 30, abs=0.1)
    # ...at the pace of a camera, not as fast as the file can be read (2.5 s of video).
    assert took > 1.5

    port = server.port
    assert server.stop() == 0  # SIGTERM ends it cleanly
    server.restart()
    assert server.port == port
    times, took = decode(server.url("cam"), 30)
    assert len(times) >= 30 and took < 10, f"after restart: {len(times)} frames in {took:.1f} s"
