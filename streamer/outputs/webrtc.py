"""WebRTC output with aiortc: one encoder per camera and codec, shared by every viewer.

aiortc's sender encodes each frame itself when its track yields frames, which would cost one
encoder per viewer. When a track yields ``av.Packet``s instead, the sender only packetizes them.
So each camera has a ``SharedEncoder`` per negotiated codec (H.264 or VP8), running in its own
thread while anyone watches, and every viewer's track hands out the same packets.

Nothing buffers without bound: a viewer's queue holds a few packets; when it overflows the viewer
skips to the next keyframe (and asks for one). A new viewer also asks for a keyframe, so its
picture starts at once, and so does a viewer's picture loss indication (RTCP PLI or FIR); keyframes
also come every ``keyframe_interval_s``. Asked-for keyframes are rate-limited per encoder, so one
viewer cannot make every other viewer's stream all keyframes.

A session takes its slot of ``max_sessions`` before anything is awaited, and gives it back if it
has not connected within ``connect_timeout_s``. A viewer's packets are queued only once its
connection sends media, so a session that never connects costs no encoding.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import aioice.ice
import aiortc.sdp
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..config import WebRtcSettings
from ..live.hub import FrameHub

log = logging.getLogger("streamer.webrtc")

CLOCK = Fraction(1, 90000)  # RTP video clock
_QUEUE_PACKETS = 8  # about a quarter second at 30 fps
MIN_KEYFRAME_GAP_S = 1.0  # asked-for keyframes (new viewer, overflow, PLI) at most this often per encoder


class SessionError(ValueError):
    """A WebRTC offer we cannot answer; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def use_host_addresses(addresses: tuple[str, ...]) -> None:
    """Offer ICE host candidates on exactly these addresses (aiortc has no interface filter)."""
    if addresses:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)


class _Subscriber:
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
        self._subscribers: list[_Subscriber] = []
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

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> _Subscriber:
        subscriber = _Subscriber(loop, self.request_keyframe)
        with self._lock:
            self._subscribers.append(subscriber)
            self._keyframe.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"{self._camera}-{self.codec}", daemon=True)
                self._thread.start()
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def _run(self) -> None:
        """Encode while anyone watches; the thread ends when the last viewer leaves."""
        context: av.VideoCodecContext | None = None
        seq, started, last_key = -1, None, 0.0
        while True:
            with self._lock:
                if not self._subscribers:
                    self._thread = None
                    return
            frame = self._hub.wait_frame(seq, timeout=0.5)
            if frame is None:
                continue
            seq = frame.seq
            started = frame.captured if started is None else started
            height, width = frame.pixels.shape[:2]
            if self._settings.max_height and height > self._settings.max_height:
                width = round(width * self._settings.max_height / height)
                height = self._settings.max_height
            width, height = width // 2 * 2, height // 2 * 2
            if context is None or (context.width, context.height) != (width, height):
                context = self._open(width, height)
                self._keyframe.set()
            picture = av.VideoFrame.from_ndarray(frame.pixels, format="rgb24").reformat(
                width=width, height=height, format="yuv420p"
            )
            picture.pts = int((frame.captured - started) / CLOCK)
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
            context.options = {"preset": "veryfast", "tune": "zerolatency", "level": "31", "forced-idr": "1"}
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


class CameraTrack(MediaStreamTrack):
    """The video track of one viewer: the camera's shared encoded packets.

    aiortc's sender first calls ``recv`` once the connection is up; only then does the viewer join
    its encoder, so a session that never connects queues nothing and asks for no keyframe.
    """

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.encoder: SharedEncoder | None = None  # set once the answer has chosen the codec
        self._subscriber: _Subscriber | None = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live" or self.encoder is None:
            raise MediaStreamError
        if self._subscriber is None:
            self._subscriber = self.encoder.subscribe(asyncio.get_running_loop())
        return await self._subscriber.queue.get()

    def stop(self) -> None:
        super().stop()
        if self.encoder is not None and self._subscriber is not None:
            self.encoder.unsubscribe(self._subscriber)


@dataclass
class Session:
    id: str
    camera: str
    pc: RTCPeerConnection
    track: CameraTrack
    codec: str
    viewer: str = ""  # who opened it (a user name), so that only they may end it
    on_close: Callable[[], None] | None = None


class WebRtcPeers:
    """Every open WebRTC session, with the shared encoders they use."""

    def __init__(self, settings: WebRtcSettings) -> None:
        self._settings = settings
        self._sessions: dict[str, Session] = {}
        self._opening = 0  # offers being answered: their slots are taken before anything is awaited
        self._encoders: dict[tuple[str, str], SharedEncoder] = {}
        self._timeouts: set[asyncio.Task] = set()
        use_host_addresses(settings.host_addresses)

    def sessions(self, camera: str) -> list[Session]:
        return [s for s in self._sessions.values() if s.camera == camera]

    def encoders(self, camera: str) -> list[SharedEncoder]:
        return [e for (name, _), e in self._encoders.items() if name == camera]

    async def answer(
        self, camera: str, hub: FrameHub, offer_sdp: str, viewer: str = "", on_close: Callable[[], None] | None = None
    ) -> Session:
        """Answer a browser's offer with our camera's video; the answer holds every ICE candidate.
        ``on_close`` is called once when the session ends, however it ends."""
        if len(self._sessions) + self._opening >= self._settings.max_sessions:
            raise SessionError(503, f"all {self._settings.max_sessions} WebRTC sessions are in use")
        if "m=video" not in offer_sdp:
            raise SessionError(400, "the offer has no video section")
        self._opening += 1
        try:
            session = await self._negotiate(camera, hub, offer_sdp)
        finally:
            self._opening -= 1
        session.viewer, session.on_close = viewer, on_close
        self._sessions[session.id] = session
        pc = session.pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(session.id)

        timeout = asyncio.create_task(self._close_unless_connected(session))
        self._timeouts.add(timeout)
        timeout.add_done_callback(self._timeouts.discard)
        log.info("camera %s: WebRTC session %s opened (%s)", camera, session.id[:8], session.codec)
        return session

    async def _negotiate(self, camera: str, hub: FrameHub, offer_sdp: str) -> Session:
        # No STUN server: aiortc's default asks Google's for every session. Host candidates suffice
        # for the viewers this serves, and nothing leaves for a third party.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            offer = RTCSessionDescription(sdp=_prefer_codecs(offer_sdp, self._settings.codecs), type="offer")
            await pc.setRemoteDescription(offer)
            transceiver = next((t for t in pc.getTransceivers() if t.kind == "video"), None)
            if transceiver is None:
                raise SessionError(400, "the offer has no video section")
            transceiver.direction = "sendonly"
            track = CameraTrack()
            sender = pc.addTrack(track)
            await pc.setLocalDescription(await pc.createAnswer())
        except SessionError:
            await pc.close()
            raise
        except Exception as exc:  # aiortc raises assorted errors for SDP it cannot use
            await pc.close()
            raise SessionError(400, f"cannot answer this offer: {exc}") from None
        codec = _answered_codec(pc.localDescription.sdp)
        if codec not in self._settings.codecs:
            await pc.close()
            raise SessionError(400, f"no common codec: we send {', '.join(self._settings.codecs)}")
        key = (camera, codec)
        encoder = self._encoders.get(key)
        if encoder is None:
            encoder = self._encoders[key] = SharedEncoder(hub, codec, self._settings, camera)
        track.encoder = encoder
        # aiortc's sender answers a viewer's PLI or FIR by asking its own encoder for a keyframe;
        # its packets come from ours, so the request is passed on (rate-limited there).
        sender._send_keyframe = encoder.request_keyframe
        return Session(uuid.uuid4().hex, camera, pc, track, codec)

    async def _close_unless_connected(self, session: Session) -> None:
        await asyncio.sleep(self._settings.connect_timeout_s)
        if session.id in self._sessions and session.pc.connectionState != "connected":
            log.info(
                "camera %s: WebRTC session %s did not connect within %g s; closed",
                session.camera, session.id[:8], self._settings.connect_timeout_s,
            )
            await self.close(session.id)

    async def close(self, session_id: str) -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        session.track.stop()
        if session.on_close is not None:
            session.on_close()
        await session.pc.close()
        log.info("camera %s: WebRTC session %s closed", session.camera, session.id[:8])
        return True

    async def close_all(self) -> None:
        for timeout in list(self._timeouts):
            timeout.cancel()
        await asyncio.gather(*(self.close(sid) for sid in list(self._sessions)))

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)


def _prefer_codecs(sdp: str, codecs: tuple[str, ...]) -> str:
    """The offer with its video codecs reordered so that ours come first, in our order.

    aiortc fixes the codec order when it reads the offer, before there is a transceiver whose
    preferences could be set, and it follows the offerer's order; so the order is set here, with
    aiortc's own SDP parser and writer.
    """
    description = aiortc.sdp.SessionDescription.parse(sdp)
    rank = {name: n for n, name in enumerate(codecs)}
    for media in description.media:
        if media.kind == "video":
            # Keep each rtx entry right after the codec it repeats.
            bases = [c for c in media.rtp.codecs if c.name.lower() != "rtx"]
            bases.sort(key=lambda c: rank.get(c.name.lower(), len(rank)))
            ordered = []
            for base in bases:
                ordered.append(base)
                ordered += [c for c in media.rtp.codecs if c.name.lower() == "rtx" and c.parameters.get("apt") == base.payloadType]
            media.rtp.codecs = ordered
            media.fmt = [c.payloadType for c in ordered]
    return str(description)


def _answered_codec(sdp: str) -> str:
    """The codec our answer sends: the first payload type of its video section."""
    section = sdp[sdp.index("m=video") :]
    first = section.split("\r\n", 1)[0].split()[3]
    match = re.search(rf"a=rtpmap:{first} ([\w-]+)/", section)
    return match.group(1).lower() if match else ""
