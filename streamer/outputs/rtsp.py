"""RTSP output: each camera's anonymized video as H.264 over RTSP (RFC 2326), for NVRs (Frigate,
Blue Iris, go2rtc) and players (VLC, ffplay): ``rtsp://HOST:PORT/CAMERA``, over TCP (interleaved)
or UDP.

The packets are those of the camera's shared H.264 encoder (``outputs.encoders``), the one WebRTC
viewers use: the same anonymized, fail-closed, zone-hidden frames as every other output, encoded
once. A client starts at a keyframe (with its SPS and PPS). Who may watch is the caller's
business: ``authorize`` answers a ``Viewing`` (ended when the client stops) or raises
``RtspRefusal`` with the status to answer.

A connection that sends no request for ``_IDLE_S`` while nothing plays is closed, as is one that
sends a request's head too slowly, too large, or garbage; a TCP client that falls behind by
``_MAX_BUFFERED`` bytes is dropped. None of it touches other clients.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Callable, Protocol
from urllib.parse import urlsplit

from aiortc.codecs.h264 import H264Encoder
from aiortc.rtp import RtpPacket

from ..live.hub import FrameHub
from .encoders import Encoders, SharedEncoder, Subscriber

log = logging.getLogger("streamer.rtsp")

_PAYLOAD_TYPE = 96
_MAX_HEAD = 8192  # bytes of one request's line and headers
_MAX_BUFFERED = 4 << 20  # bytes queued to a TCP client before it counts as too slow and is dropped
_REQUEST_TIMEOUT_S = 30  # for a request's head once its first byte came
_IDLE_S = 60  # a connection with nothing playing that sends no request for this long is closed
_UDP_IDLE_S = 90  # one playing over UDP must send something (keep-alives) at least this often
_MAX_SESSIONS = 2  # per connection
_METHODS = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"


class RtspRefusal(Exception):
    """A request the gate refuses: ``status`` (401, 403, 503) and headers to answer with."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = headers or {}


class Viewing(Protocol):
    def begin(self) -> None: ...

    def end(self) -> None: ...


class Gate(Protocol):
    """Who may watch: the server's users, grants and stream caps (``http.rtsp.RtspGate``)."""

    async def check(self, authorization: str | None, camera: str, address: str) -> object:
        """The caller (raises ``RtspRefusal``)."""

    def watch(self, caller: object, camera: str) -> Viewing:
        """A stream slot for the caller (raises ``RtspRefusal``)."""


@dataclass
class _Session:
    id: str
    camera: str
    udp_to: tuple[str, int] | None = None  # client's RTP address; None: interleaved on the connection
    channel: int = 0
    playing: asyncio.Task | None = None
    viewing: Viewing | None = None
    subscriber: Subscriber | None = None
    encoder: SharedEncoder | None = None
    udp: asyncio.DatagramTransport | None = None
    seq: int = field(default_factory=lambda: secrets.randbelow(1 << 16))
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    base: int = field(default_factory=lambda: secrets.randbits(32))


class RtspServer:
    def __init__(self, hub_of: Callable[[str], FrameHub], encoders: Encoders, gate: Gate, host: str, port: int) -> None:
        self._hub_of = hub_of  # raises LookupError for a camera it does not have
        self._encoders = encoders
        self._gate = gate
        self._host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self.port, limit=_MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]  # the one chosen, when port 0 was asked
        log.info("RTSP on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        address = writer.get_extra_info("peername")[0]
        sessions: dict[str, _Session] = {}
        try:
            while (request := await _read_request(reader, _idle_s(sessions))) is not None:
                method, url, headers = request
                status, reply_headers, body = await self._answer(method, url, headers, address, sessions, writer)
                _reply(writer, status, headers.get("cseq", "0"), reply_headers, body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass  # the client left, sent garbage or too much: the connection goes, nothing else
        finally:
            for session in sessions.values():
                _stop(session)
            writer.close()
            self._connections.discard(task)

    async def _answer(
        self, method: str, url: str, headers: dict[str, str], address: str,
        sessions: dict[str, _Session], writer: asyncio.StreamWriter,
    ) -> tuple[int, dict[str, str], bytes]:
        if method in ("OPTIONS", "GET_PARAMETER"):
            return 200, {"Public": _METHODS}, b""
        camera, track = _camera_of(url)
        try:  # the login first: who may not log in learns nothing, not even which cameras exist
            caller = await self._gate.check(headers.get("authorization"), camera, address)
        except RtspRefusal as refusal:
            return refusal.status, refusal.headers, b""
        try:
            hub = self._hub_of(camera)
        except LookupError:
            return 404, {}, b""
        if method == "DESCRIBE":
            sdp = _sdp(camera, writer.get_extra_info("sockname")[0]).encode()
            base = url if url.endswith("/") else url + "/"
            return 200, {"Content-Base": base, "Content-Type": "application/sdp"}, sdp
        if method == "SETUP":
            return await self._setup(url, headers, camera, track, address, sessions, writer)
        session = sessions.get(headers.get("session", "").split(";")[0])
        if session is None:
            return 454, {}, b""  # Session Not Found
        if method == "PLAY":
            if session.playing is None:
                try:
                    session.viewing = self._gate.watch(caller, camera)
                except RtspRefusal as refusal:
                    return refusal.status, refusal.headers, b""
                session.viewing.begin()
                encoder = self._encoders.get(camera, hub, "h264")
                session.encoder = encoder
                session.subscriber = encoder.subscribe(asyncio.get_running_loop())
                session.playing = asyncio.create_task(self._play(session, writer))
            return 200, {"Session": session.id, "Range": "npt=0.000-",
                         "RTP-Info": f"url={url};seq={session.seq};rtptime={session.base}"}, b""
        if method == "TEARDOWN":
            _stop(sessions.pop(session.id))
            return 200, {}, b""
        return 405, {"Allow": _METHODS}, b""

    async def _setup(
        self, url: str, headers: dict[str, str], camera: str, track: str, address: str,
        sessions: dict[str, _Session], writer: asyncio.StreamWriter,
    ) -> tuple[int, dict[str, str], bytes]:
        if track not in ("", "trackID=0"):
            return 404, {}, b""
        if len(sessions) >= _MAX_SESSIONS:
            return 453, {}, b""  # Not Enough Bandwidth: one connection, at most two sessions
        transport = headers.get("transport", "")
        session = _Session(secrets.token_hex(8), camera)
        fields = dict(part.partition("=")[::2] for part in transport.split(";"))
        try:
            channel = int(fields.get("interleaved", "0-1").split("-")[0])
            rtp_port = int(fields.get("client_port", "0").split("-")[0])
        except ValueError:
            return 461, {}, b""
        if "RTP/AVP/TCP" in transport and 0 <= channel <= 254:
            session.channel = channel
            answer = f"RTP/AVP/TCP;unicast;interleaved={session.channel}-{session.channel + 1};ssrc={session.ssrc:08X}"
        elif "RTP/AVP/TCP" not in transport and 1 <= rtp_port <= 65534:
            session.udp_to = (address, rtp_port)
            loop = asyncio.get_running_loop()
            session.udp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=(writer.get_extra_info("sockname")[0], 0)
            )
            local = session.udp.get_extra_info("sockname")[1]
            answer = (f"RTP/AVP;unicast;client_port={rtp_port}-{rtp_port + 1};"
                      f"server_port={local}-{local + 1};ssrc={session.ssrc:08X}")
        else:
            return 461, {}, b""  # Unsupported Transport
        sessions[session.id] = session
        return 200, {"Transport": answer, "Session": f"{session.id};timeout=60"}, b""

    async def _play(self, session: _Session, writer: asyncio.StreamWriter) -> None:
        """Send the camera's H.264 packets to the client as RTP until it stops or falls behind."""
        packer = H264Encoder()
        assert session.subscriber is not None
        try:
            while True:
                packet = await session.subscriber.queue.get()
                payloads, timestamp = packer.pack(packet)
                for n, payload in enumerate(payloads):
                    rtp = RtpPacket(
                        payload_type=_PAYLOAD_TYPE, sequence_number=session.seq,
                        timestamp=(session.base + timestamp) & 0xFFFFFFFF, ssrc=session.ssrc,
                        payload=payload, marker=int(n == len(payloads) - 1),
                    ).serialize()
                    session.seq = (session.seq + 1) & 0xFFFF
                    if session.udp is not None:
                        session.udp.sendto(rtp, session.udp_to)
                    else:
                        if writer.transport.get_write_buffer_size() > _MAX_BUFFERED:
                            log.info("camera %s: RTSP client too slow, dropped", session.camera)
                            writer.close()
                            return
                        writer.write(b"$" + bytes([session.channel]) + len(rtp).to_bytes(2, "big") + rtp)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            _stop(session)


def _idle_s(sessions: dict[str, _Session]) -> float | None:
    """How long the connection may stay silent: for ever while it plays over TCP (a dead client
    shows when its data backs up), a while longer than keep-alives over UDP, else _IDLE_S."""
    playing = [session for session in sessions.values() if session.playing is not None]
    if any(session.udp is None for session in playing):
        return None
    return _UDP_IDLE_S if playing else _IDLE_S


def _stop(session: _Session) -> None:
    if session.playing is not None and session.playing is not asyncio.current_task():
        session.playing.cancel()
    session.playing = None
    if session.subscriber is not None and session.encoder is not None:
        session.encoder.unsubscribe(session.subscriber)
        session.subscriber = None
    if session.udp is not None:
        session.udp.close()
        session.udp = None
    if session.viewing is not None:
        session.viewing.end()
        session.viewing = None


async def _read_request(reader: asyncio.StreamReader, idle_s: float | None) -> tuple[str, str, dict[str, str]] | None:
    """The next request (method, URL, lower-case headers); interleaved data the client sends
    (RTCP receiver reports) is skipped. None at the end of the connection."""
    while True:
        first = await asyncio.wait_for(reader.read(1), idle_s)
        if not first:
            return None
        if first == b"$":  # interleaved binary data: channel, length, payload
            async with asyncio.timeout(_REQUEST_TIMEOUT_S):
                header = await reader.readexactly(3)
                await reader.readexactly(int.from_bytes(header[1:], "big"))
            continue
        async with asyncio.timeout(_REQUEST_TIMEOUT_S):
            head = first + await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        method, url, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length > _MAX_HEAD:
            raise ValueError("request body too large")
        if length:
            await reader.readexactly(length)
        return method.upper(), url, headers


def _reply(writer: asyncio.StreamWriter, status: int, cseq: str, headers: dict[str, str], body: bytes) -> None:
    reason = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
              453: "Not Enough Bandwidth", 454: "Session Not Found", 461: "Unsupported Transport",
              503: "Service Unavailable"}.get(status, "Error")
    lines = [f"RTSP/1.0 {status} {reason}", f"CSeq: {cseq}", "Server: streamer",
             *(f"{name}: {value}" for name, value in headers.items())]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def _camera_of(url: str) -> tuple[str, str]:
    """(camera, track) of ``rtsp://host:port/CAMERA[/trackID=0]``."""
    parts = [part for part in urlsplit(url).path.split("/") if part]
    if not parts:
        return "", ""
    return parts[0], "/".join(parts[1:])


def _sdp(camera: str, address: str) -> str:
    family = "IP6" if ":" in address else "IP4"
    return "\r\n".join([
        "v=0", f"o=- {secrets.randbits(31)} 1 IN {family} {address}", f"s=streamer {camera}", "t=0 0",
        "a=control:*", f"m=video 0 RTP/AVP {_PAYLOAD_TYPE}", f"a=rtpmap:{_PAYLOAD_TYPE} H264/90000",
        f"a=fmtp:{_PAYLOAD_TYPE} packetization-mode=1", "a=control:trackID=0", "",
    ])
