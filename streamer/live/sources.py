"""Live frame sources read with PyAV: RTSP cameras, V4L2 devices and video files; and a clock.

A source yields decoded RGB frames until it fails; reconnecting is the pipeline's job. Files can
stand in for a camera: they loop and are paced at their own frame rate. ``pattern://`` makes a
synthetic camera whose frames carry their capture time, for measuring latency end to end.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import av
import numpy as np

from ..config import CameraSettings
from ..redact import redact


class SourceKind(str, Enum):
    rtsp = "rtsp"
    v4l2 = "v4l2"
    file = "file"
    pattern = "pattern"


# pattern://WIDTHxHEIGHT@FPS: a synthetic camera that stamps the wall clock into every frame.
_PATTERN = re.compile(r"pattern://(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?")
CLOCK_BITS = 32  # the low 32 bits of the epoch time in ms, most significant bit first


class SourceError(RuntimeError):
    """The source cannot be opened or stopped delivering frames."""


class SourceEnded(SourceError):
    """A file that does not loop has no more frames."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: RGB pixels and the monotonic time it was decoded (for files: due)."""

    pixels: np.ndarray
    captured: float
    index: int


def source_kind(source: str) -> SourceKind:
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("rtsp", "rtsps"):
        return SourceKind.rtsp
    if re.fullmatch(r"/dev/video\d+", source):
        return SourceKind.v4l2
    if scheme == "pattern":
        return SourceKind.pattern
    return SourceKind.file


def frames(camera: CameraSettings, open_timeout_s: float, read_timeout_s: float) -> Iterator[Frame]:
    """Decoded frames from the camera's source until it fails (``SourceError``) or ends."""
    kind = source_kind(camera.source)
    if kind is SourceKind.pattern:
        yield from _pattern(camera.source)
        return
    index = 0
    while True:
        container = _open(camera.source, kind, open_timeout_s, read_timeout_s)
        try:
            stream = container.streams.video[0]
            # One decoding thread per camera: FFmpeg's frame threads cost more CPU a frame (3.5
            # against 3.1 ms at 1080p, bench/frame_costs.py), and cameras decode side by side anyway.
            stream.thread_count = 1
            pace = _Pacer(stream) if kind is SourceKind.file and camera.realtime else None
            for frame in _decode(container, stream, camera.name):
                if pace:
                    pace.wait(frame)
                captured = time.monotonic()
                yield Frame(frame.to_ndarray(format="rgb24"), captured, index)
                index += 1
        finally:
            container.close()
        if kind is not SourceKind.file or not camera.loop:
            if kind is SourceKind.file:
                raise SourceEnded(f"{camera.source}: end of file")
            raise SourceError("the stream ended")
        if index == 0:
            raise SourceError(f"{camera.source}: no video frames")


def clock_stripe_height(height: int) -> int:
    return max(8, height // 12)


def _pattern(source: str) -> Iterator[Frame]:
    """Frames of a moving test card with the capture time drawn as a stripe of 32 black/white
    cells across the top, so a viewer can measure capture-to-display latency from the pixels."""
    match = _PATTERN.fullmatch(source)
    if not match:
        raise SourceError(f"{source}: expected pattern://WIDTHxHEIGHT@FPS")
    width, height = int(match.group(1)), int(match.group(2))
    fps = float(match.group(3) or 30)
    if not (64 <= width <= 7680 and 64 <= height <= 4320 and 0 < fps <= 120):
        raise SourceError(f"{source}: size or rate out of range")
    ramp = np.linspace(40, 215, width, dtype=np.float32)
    card = np.stack([np.tile(ramp, (height, 1)), np.tile(ramp[::-1], (height, 1)),
                     np.full((height, width), 128, np.float32)], axis=2).astype(np.uint8)
    stripe = clock_stripe_height(height)
    edges = np.linspace(0, width, CLOCK_BITS + 1).astype(int)
    start = time.monotonic()
    index = 0
    while True:
        due = start + index / fps
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        captured, stamp = time.monotonic(), int(time.time() * 1000) & 0xFFFFFFFF
        pixels = card.copy()
        bar = (index * 8) % width
        pixels[stripe:, bar : bar + 16] = 255  # something that moves
        for bit in range(CLOCK_BITS):
            on = (stamp >> (CLOCK_BITS - 1 - bit)) & 1
            pixels[:stripe, edges[bit] : edges[bit + 1]] = 255 if on else 0
        yield Frame(pixels, captured, index)
        index += 1


def _open(source: str, kind: SourceKind, open_timeout_s: float, read_timeout_s: float) -> av.container.InputContainer:
    options: dict[str, str] = {}
    fmt = None
    if kind is SourceKind.rtsp:
        options = {"rtsp_transport": "tcp", "fflags": "nobuffer", "max_delay": "500000"}
    elif kind is SourceKind.v4l2:
        fmt = "v4l2"
    elif not Path(source).is_file():
        raise SourceError(f"{source}: no such file")
    try:
        container = av.open(source, format=fmt, options=options, timeout=(open_timeout_s, read_timeout_s))
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(f"cannot open: {_reason(exc)}") from None
    if not container.streams.video:
        container.close()
        raise SourceError("the source has no video stream")
    return container


def _decode(container: av.container.InputContainer, stream: av.VideoStream, name: str) -> Iterator[av.VideoFrame]:
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                yield frame
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(f"read failed: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    return redact(str(exc))


class _Pacer:
    """Sleeps so that a file's frames come out at the rate of their timestamps."""

    def __init__(self, stream: av.VideoStream) -> None:
        self._start_wall: float | None = None
        self._start_pts = 0.0
        rate = stream.average_rate or stream.guessed_rate or 30
        self._fallback_step = 1.0 / float(rate)
        self._last = 0.0

    def wait(self, frame: av.VideoFrame) -> None:
        t = float(frame.time) if frame.time is not None else self._last + self._fallback_step
        self._last = t
        now = time.monotonic()
        if self._start_wall is None:
            self._start_wall, self._start_pts = now, t
            return
        delay = self._start_wall + (t - self._start_pts) - now
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:  # fell far behind (a slow consumer): re-anchor instead of racing
            self._start_wall, self._start_pts = now, t
