"""Where a camera's anonymized frames meet their viewers.

The pipeline publishes each anonymized frame once. Viewers read the newest one: a slow viewer
simply skips frames and never holds up the pipeline or other viewers. JPEGs are made on demand,
on the viewers' side (never on the pipeline's threads), and shared: one encode per frame and
height, whatever the number of MJPEG viewers, and none while nobody watches (WebRTC viewers take
the pixels; see ``outputs.webrtc.SharedEncoder``). Heights come from a small set, so a client
cannot make the hub encode a frame at thousands of sizes.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np
import simplejpeg


@dataclass(frozen=True, slots=True)
class Published:
    seq: int
    pixels: np.ndarray  # RGB, anonymized; never written to
    captured: float
    index: int  # the source frame's number since the camera started


# Frames kept for readers that want every one (the shared encoders): a burst of frames released
# together by a detection, at 30 fps, is at most a few frames long.
RECENT_FRAMES = 4
# The heights a JPEG may be scaled down to (besides the frame's own).
JPEG_HEIGHTS = (180, 240, 360, 480, 540, 720, 1080)


@dataclass(slots=True)
class _Variant:
    """The newest JPEG made at one height; its lock is held while it is made."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    seq: int = -1
    data: bytes = b""


class FrameHub:
    def __init__(self, jpeg_quality: int) -> None:
        self._quality = jpeg_quality
        self._latest: Published | None = None
        self._variants = {height: _Variant() for height in (None, *JPEG_HEIGHTS)}
        self._waiters: set[asyncio.Future] = set()
        self._published = threading.Condition()
        self._recent: deque[Published] = deque(maxlen=RECENT_FRAMES)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.viewers = 0

    @property
    def latest(self) -> Published | None:
        return self._latest

    def publish(self, pixels: np.ndarray, captured: float, index: int) -> Published:
        """Called by the pipeline's encode thread for every output frame; the pixels become read-only."""
        pixels.flags.writeable = False
        with self._published:
            seq = self._latest.seq + 1 if self._latest else 0
            self._latest = published = Published(seq, pixels, captured, index)
            self._recent.append(published)
            self._published.notify_all()
        loop = self._loop
        if loop is not None and self._waiters:
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the event loop has closed
                self._loop = None
        return published

    def jpeg(self, frame: Published, height: int | None = None) -> bytes:
        """``frame`` as JPEG, scaled down to ``height`` (one of JPEG_HEIGHTS; never enlarged);
        blocking, run it off the event loop. Viewers of one height share each encode; heights
        encode side by side."""
        if height is not None and height >= frame.pixels.shape[0]:
            height = None  # never enlarged: the frame's own size
        variant = self._variants[height]
        with variant.lock:
            if variant.seq != frame.seq:
                pixels = frame.pixels
                full_height = pixels.shape[0]
                if height is not None and height < full_height:
                    width = max(2, round(pixels.shape[1] * height / full_height))
                    pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
                variant.data = simplejpeg.encode_jpeg(pixels, quality=self._quality, colorspace="RGB", colorsubsampling="420")
                variant.seq = frame.seq
            return variant.data

    def wait_next(self, after_seq: int, timeout: float) -> Published | None:
        """Thread-side: the first frame after ``after_seq`` that the hub still keeps (the newest
        when the reader fell further behind), waiting up to ``timeout``. For encoders, which want
        every frame: frames come out in bursts when they wait for detection, and the newest alone
        would skip the rest of a burst."""
        with self._published:
            self._published.wait_for(lambda: self._latest is not None and self._latest.seq > after_seq, timeout)
            return next((frame for frame in self._recent if frame.seq > after_seq), None)

    async def next_frame(self, after_seq: int, timeout: float) -> Published | None:
        """The newest frame with a sequence number above ``after_seq``, waiting up to ``timeout``."""
        latest = self._latest
        if latest is not None and latest.seq > after_seq:
            return latest
        self._loop = asyncio.get_running_loop()
        waiter = self._loop.create_future()
        self._waiters.add(waiter)
        try:
            latest = self._latest  # a frame may have come between the check and the registration
            if latest is None or latest.seq <= after_seq:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)
        latest = self._latest
        return latest if latest is not None and latest.seq > after_seq else None

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
