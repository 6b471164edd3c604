"""Viewers of a camera, for the tests and the benchmarks: JPEG parts out of an MJPEG stream, and
an aiortc WHEP client that stays on loopback."""

from __future__ import annotations

import asyncio
from typing import Iterable, Iterator

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError


def jpeg_parts(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The JPEGs in a multipart/x-mixed-replace body, as its chunks arrive."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while True:
            start = buffer.find(b"\xff\xd8")
            end = buffer.find(b"\xff\xd9", start + 2)
            if start < 0 or end < 0:
                break
            yield buffer[start : end + 2]
            buffer = buffer[end + 2 :]


async def watch_over_webrtc(url: str, seconds: float) -> int:
    """Watch a camera over WHEP for ``seconds`` with an aiortc client that has no STUN server;
    answers how many frames arrived."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    frames = 0

    @pc.on("track")
    def on_track(track) -> None:
        async def pull() -> None:
            nonlocal frames
            try:
                while True:
                    await track.recv()
                    frames += 1
            except MediaStreamError:  # the session ended
                return

        asyncio.ensure_future(pull())

    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=20) as client:
        reply = await client.post(url, content=pc.localDescription.sdp, headers={"content-type": "application/sdp"})
        assert reply.status_code == 201, reply.text
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply.text, type="answer"))
        await asyncio.sleep(seconds)
        await client.delete(str(httpx.URL(url).join(reply.headers["location"])))
    await pc.close()
    return frames
