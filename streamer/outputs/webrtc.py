"""WebRTC output with aiortc, from the camera's shared encoder (``outputs.encoders``).

aiortc's sender encodes each frame itself when its track yields frames, which would cost one
encoder per viewer. When a track yields ``av.Packet``s instead, the sender only packetizes them;
so every viewer's track hands out the packets of the camera's ``SharedEncoder`` for the codec
the answer chose (H.264 or VP8). A viewer's picture loss indication (RTCP PLI or FIR) asks that
encoder for a keyframe.

A session takes its slot of ``max_sessions`` before anything is awaited, and gives it back if it
has not connected within ``connect_timeout_s``. A viewer's packets are queued only once its
connection sends media, so a session that never connects costs no encoding.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Callable

import aioice.ice
import aiortc.sdp
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..config import WebRtcSettings
from ..live.hub import FrameHub
from .encoders import Encoders, SharedEncoder, Subscriber

log = logging.getLogger("streamer.webrtc")



class SessionError(ValueError):
    """A WebRTC offer we cannot answer; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def use_host_addresses(addresses: tuple[str, ...]) -> None:
    """Offer ICE host candidates on exactly these addresses (aiortc has no interface filter)."""
    if addresses:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)


class CameraTrack(MediaStreamTrack):
    """The video track of one viewer: the camera's shared encoded packets.

    aiortc's sender first calls ``recv`` once the connection is up; only then does the viewer join
    its encoder, so a session that never connects queues nothing and asks for no keyframe.
    """

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.encoder: SharedEncoder | None = None  # set once the answer has chosen the codec
        self._subscriber: Subscriber | None = None

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

    def __init__(self, settings: WebRtcSettings, encoders: Encoders) -> None:
        self._settings = settings
        self._sessions: dict[str, Session] = {}
        self._opening = 0  # offers being answered: their slots are taken before anything is awaited
        self._encoders = encoders
        self._timeouts: set[asyncio.Task] = set()
        use_host_addresses(settings.host_addresses)

    def sessions(self, camera: str) -> list[Session]:
        return [s for s in self._sessions.values() if s.camera == camera]

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
        encoder = self._encoders.get(camera, hub, codec)
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
