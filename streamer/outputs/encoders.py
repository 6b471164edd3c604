"""The encoded video of each camera, made once and shared by every viewer of every transport
(WebRTC sessions, RTSP clients): one ``SharedEncoder`` per camera and codec (H.264 or VP8),
running in its own thread while anyone watches.

Nothing buffers without bound: a viewer's queue holds a few packets; when it overflows the viewer
skips to the next keyframe (and asks for one). A new viewer also asks for a keyframe, so its
picture starts at once; keyframes also come every ``keyframe_interval_s``. Asked-for keyframes are
rate-limited per encoder, so one viewer cannot make every other viewer's stream all keyframes.
H.264 keyframes carry their SPS and PPS, so a viewer that joins late can start at any of them.
While a camera sends nothing (its source is down), viewers get a black frame every ``IDLE_S``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from fractions import Fraction

import av
import numpy as np

from ..config import WebRtcSettings
from ..live.hub import FrameHub

log = logging.getLogger("streamer.encoders")

CLOCK = Fraction(1, 90000)  # RTP video clock
_QUEUE_PACKETS = 8  # about a quarter second at 30 fps
MIN_KEYFRAME_GAP_S = 1.0  # asked-for keyframes (new viewer, overflow, PLI) at most this often per encoder
IDLE_S = 0.5  # a camera silent this long gets a black frame, and one more each IDLE_S while it stays silent


class Subscriber:
    """One viewer's packet queue; lives on the event loop, fed from the encoder thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request_keyframe) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[av.Packet] = asyncio.Queue(_QUEUE_PACKETS)
        self.waiting_for_keyframe = True
        self._request_keyframe = request_keyframe

    def offer(self, packet: av.Packet) -> None:
        """Called on the event loop for each packet the shared encoder made."""
        if self.waiting_for_keyframe and not packet.is_keyframe:
            return
        if self.queue.full():  # the viewer is behind: drop what it has, restart at a keyframe
            while not self.queue.empty():
                self.queue.get_nowait()
            self.waiting_for_keyframe = True
            self._request_keyframe()
            return
        self.waiting_for_keyframe = False
        self.queue.put_nowait(packet)


class SharedEncoder:
    """Encodes a camera's anonymized frames once, for every viewer negotiated on ``codec``."""

    def __init__(self, hub: FrameHub, codec: str, settings: WebRtcSettings, camera: str) -> None:
        self.codec = codec
        self._hub = hub
        self._settings = settings
        self._camera = camera
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._keyframe = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames = 0
        self.keyframes = 0

    @property
    def viewers(self) -> int:
        return len(self._subscribers)

    def request_keyframe(self) -> None:
        """Make a keyframe soon: at once unless one was made less than MIN_KEYFRAME_GAP_S ago."""
        self._keyframe.set()

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Subscriber:
        subscriber = Subscriber(loop, self.request_keyframe)
        with self._lock:
            self._subscribers.append(subscriber)
            self._keyframe.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"{self._camera}-{self.codec}", daemon=True)
                self._thread.start()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def _run(self) -> None:
        """Encode while anyone watches; the thread ends when the last viewer leaves. While the
        camera sends nothing (its source is down), a black frame every IDLE_S keeps viewers'
        streams alive: NVRs drop an RTSP feed that goes quiet, and black is what fail-closed looks like."""
        context: av.VideoCodecContext | None = None
        seq, started, last_key = -1, None, 0.0
        black: np.ndarray | None = None
        while True:
            with self._lock:
                if not self._subscribers:
                    self._thread = None
                    return
            frame = self._hub.wait_next(seq, timeout=IDLE_S)
            if frame is not None:
                seq, pixels, captured = frame.seq, frame.pixels, frame.captured
            elif black is not None:
                pixels, captured = black, time.monotonic()
            else:
                continue
            started = captured if started is None else started
            height, width = pixels.shape[:2]
            if black is None or black.shape != pixels.shape:
                black = np.zeros_like(pixels)
            if self._settings.max_height and height > self._settings.max_height:
                width = round(width * self._settings.max_height / height)
                height = self._settings.max_height
            width, height = width // 2 * 2, height // 2 * 2
            if context is None or (context.width, context.height) != (width, height):
                context = self._open(width, height)
                self._keyframe.set()
            picture = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(
                width=width, height=height, format="yuv420p"
            )
            picture.pts = int((captured - started) / CLOCK)
            picture.time_base = CLOCK
            now = time.monotonic()
            asked = self._keyframe.is_set() and now - last_key >= MIN_KEYFRAME_GAP_S
            if asked or now - last_key >= self._settings.keyframe_interval_s:
                self._keyframe.clear()
                picture.pict_type = av.video.frame.PictureType.I
                last_key = now
                self.keyframes += 1
            try:
                packets = context.encode(picture)
            except av.FFmpegError as exc:
                log.error("camera %s: %s encoder failed: %s", self._camera, self.codec, exc)
                context = None
                continue
            self.frames += 1
            with self._lock:
                subscribers = list(self._subscribers)
            for packet in packets:
                packet.time_base = CLOCK
                for subscriber in subscribers:
                    subscriber.loop.call_soon_threadsafe(subscriber.offer, packet)

    def _open(self, width: int, height: int) -> av.VideoCodecContext:
        bitrate = self._settings.bitrate_kbps * 1000
        if self.codec == "h264":
            context = av.CodecContext.create("libx264", "w")
            # superfast: half veryfast's CPU (720p 4 ms a frame against 8; 1080p 12 against 21, measured
            # alone on this 2-core machine), which the pipeline's threads need; repeat-headers: SPS
            # and PPS before every keyframe, for viewers that join late (RTSP)
            context.options = {"preset": "superfast", "tune": "zerolatency", "level": "31", "forced-idr": "1",
                               "x264-params": "repeat-headers=1"}
            context.profile = "Baseline"
        else:
            context = av.CodecContext.create("libvpx", "w")
            context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                               "error-resilient": "1"}
        context.width, context.height = width, height
        context.pix_fmt = "yuv420p"
        context.time_base = CLOCK
        context.framerate = Fraction(30, 1)
        context.bit_rate = bitrate
        context.gop_size = 10_000  # keyframes only when we ask for one
        context.thread_count = 1
        return context


class Encoders:
    """Every camera's shared encoders, by camera and codec, made on first use."""

    def __init__(self, settings: WebRtcSettings) -> None:
        self._settings = settings
        self._by_key: dict[tuple[str, str], SharedEncoder] = {}

    def get(self, camera: str, hub: FrameHub, codec: str) -> SharedEncoder:
        encoder = self._by_key.get((camera, codec))
        if encoder is None:
            encoder = self._by_key[(camera, codec)] = SharedEncoder(hub, codec, self._settings, camera)
        return encoder

    def of(self, camera: str) -> list[SharedEncoder]:
        return [encoder for (name, _), encoder in self._by_key.items() if name == camera]
