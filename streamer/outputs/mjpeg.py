"""MJPEG output: a camera's anonymized frames as ``multipart/x-mixed-replace`` JPEG parts."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

from ..live import metrics
from ..live.hub import FrameHub

BOUNDARY = "frame"
MEDIA_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"


async def mjpeg(hub: FrameHub, camera: str, fps: float | None, height: int | None) -> AsyncIterator[bytes]:
    """The newest frames of ``hub`` as multipart parts, at most ``fps`` a second, ``height`` high."""
    hub.viewers += 1
    metrics.VIEWERS.labels(camera).set(hub.viewers)
    try:
        seq = -1
        min_gap = 1.0 / fps if fps else 0.0
        while True:
            started = time.monotonic()
            frame = await hub.next_frame(seq, timeout=5.0)
            if frame is None:
                continue  # no new frame yet: keep the connection and wait on
            seq = frame.seq
            data = await asyncio.to_thread(hub.jpeg, frame, height)
            yield (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                + data
                + b"\r\n"
            )
            if min_gap and (rest := min_gap - (time.monotonic() - started)) > 0:
                await asyncio.sleep(rest)
    finally:
        hub.viewers -= 1
        metrics.VIEWERS.labels(camera).set(hub.viewers)
