"""Clients that try to take the service down without sending much: each is answered or cut off,
and the server keeps serving everyone else."""

from __future__ import annotations

import asyncio
import socket
import time

import cv2
import httpx
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from browser import LOOPBACK_WEBRTC
from conftest import camera
from streamer.outputs.webrtc import use_host_addresses

use_host_addresses(("127.0.0.1",))  # this test process's aiortc client stays on loopback too


def stalled_upload(url: str, path: str, content_type: str, length: int) -> socket.socket:
    """A connection that sends a request's headers and a few bytes of its body, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n".encode() + b"\x89PNG\r\n"
    )
    return sock


def answer_status(sock: socket.socket, timeout: float) -> int:
    sock.settimeout(timeout)
    head = sock.recv(4096).decode("latin-1")
    return int(head.split(" ", 2)[1])


def test_stalled_uploads_are_cut_off_and_free_their_slots(start_server):
    srv = start_server({
        "STREAMER_SERVER__WORKERS": "1", "STREAMER_SERVER__MAX_UPLOADS": "2",
        "STREAMER_SERVER__BODY_TIMEOUT_S": "2", "STREAMER_DETECTOR__PROFILE": "fast",
    })
    image = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()

    def post(body: bytes = image) -> int:
        return httpx.post(srv.url + "/v1/anonymize", content=body, headers={"content-type": "image/png"}).status_code

    stalled = [stalled_upload(srv.url, "/v1/anonymize", "image/png", 1_000_000) for _ in range(2)]
    try:
        # both upload slots are held by the stalled clients (once the server has read their heads)...
        # (probed with a body that is no image: let in, it is answered 400 at once, with no detection)
        deadline = time.monotonic() + 1.5  # within body_timeout_s
        while post(b"not an image") != 503:
            assert time.monotonic() < deadline, "the stalled uploads hold no slots"
            time.sleep(0.05)
        started = time.monotonic()
        assert [answer_status(sock, timeout=10) for sock in stalled] == [408, 408]
        assert time.monotonic() - started < 5  # ...for body_timeout_s, not for ever
        assert post() == 200
    finally:
        for sock in stalled:
            sock.close()


def test_a_stalled_webrtc_offer_is_cut_off_too(start_server):
    srv = start_server({"STREAMER_SERVER__BODY_TIMEOUT_S": "1"}, ["--camera", "cam=pattern://320x180@10"])
    sock = stalled_upload(srv.url, "/api/cameras/cam/whep", "application/sdp", 10_000)
    try:
        assert answer_status(sock, timeout=10) == 408
    finally:
        sock.close()
    oversized = httpx.post(srv.url + "/api/cameras/cam/offer", content=b"x" * 100_000,
                           headers={"content-type": "application/json"})
    assert oversized.status_code == 413 and oversized.json()["error"] == "too_large"


# --------------------------------------------------------------------------------------------
# WebRTC sessions


async def offer_sdp() -> tuple[RTCPeerConnection, str]:
    """An aiortc peer with a complete receive-only video offer (all candidates gathered)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def post_offers(url: str, count: int) -> tuple[list[RTCPeerConnection], list[int]]:
    """``count`` offers posted at once by peers that never take the answer (so never connect)."""
    peers, offers = zip(*[await offer_sdp() for _ in range(count)])
    async with httpx.AsyncClient(timeout=30) as client:
        replies = await asyncio.gather(
            *(client.post(url, content=sdp, headers={"content-type": "application/sdp"}) for sdp in offers)
        )
    return list(peers), [reply.status_code for reply in replies]


@pytest.fixture(scope="module")
def webrtc_server(start_server):
    return start_server(
        {**LOOPBACK_WEBRTC, "STREAMER_WEBRTC__MAX_SESSIONS": "2", "STREAMER_WEBRTC__CONNECT_TIMEOUT_S": "2",
         "STREAMER_WEBRTC__CODECS": "[vp8]", "STREAMER_PIPELINE__DETECTOR__PROFILE": "fast"},
        ["--camera", "cam=pattern://320x180@15"],
    )


def test_concurrent_offers_never_take_more_than_max_sessions_and_unconnected_ones_give_them_back(webrtc_server):
    url = f"{webrtc_server.url}/api/cameras/cam/whep"

    async def scenario() -> None:
        peers, statuses = await post_offers(url, 6)
        assert sorted(statuses) == [201, 201, 503, 503, 503, 503]
        assert camera(webrtc_server)["webrtc_sessions"] == 2
        await asyncio.sleep(2)  # connect_timeout_s
        await wait_until(lambda: camera(webrtc_server)["webrtc_sessions"] == 0, 10)
        later, statuses = await post_offers(url, 1)
        assert statuses == [201]
        for pc in peers + later:
            await pc.close()

    asyncio.run(scenario())


def test_a_viewers_picture_loss_gets_a_keyframe_and_a_flood_of_them_is_rate_limited(webrtc_server):
    url = f"{webrtc_server.url}/api/cameras/cam/whep"

    def keyframes() -> int:
        return camera(webrtc_server)["webrtc_encoders"]["vp8"]["keyframes"]

    async def scenario() -> tuple[int, int]:
        pc, sdp = await offer_sdp()
        async with httpx.AsyncClient(timeout=30) as client:
            reply = await client.post(url, content=sdp, headers={"content-type": "application/sdp"})
        assert reply.status_code == 201
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply.text, type="answer"))
        receiver = pc.getReceivers()[0]
        await wait_until(lambda: receiver.getSynchronizationSources(), 10)
        ssrc = receiver.getSynchronizationSources()[0].source
        await asyncio.sleep(1.2)  # past the new viewer's keyframe and the rate limit
        before = keyframes()
        await receiver._send_rtcp_pli(ssrc)  # what a browser sends when it lost a picture
        await asyncio.sleep(0.5)  # well under keyframe_interval_s (2 s)
        after_one = keyframes() - before
        before = keyframes()
        for _ in range(40):  # 4 s of 10 PLIs a second
            await receiver._send_rtcp_pli(ssrc)
            await asyncio.sleep(0.1)
        flood = keyframes() - before
        await pc.close()
        return after_one, flood

    after_one, flood = asyncio.run(scenario())
    assert after_one == 1
    assert flood <= 5  # at most one a second (MIN_KEYFRAME_GAP_S), not one per PLI


async def wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------------------------
# MJPEG streams and shutdown


def open_stream(url: str) -> socket.socket:
    """An MJPEG stream opened and left unread (its status line is checked)."""
    host, port = url.removeprefix("http://").split("/", 1)[0].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(f"GET /{url.split('/', 3)[3]} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert answer_status(sock, timeout=10) == 200
    return sock


def test_mjpeg_heights_come_from_a_small_set_and_streams_are_capped(start_server):
    srv = start_server(
        {"STREAMER_SERVER__MAX_STREAMS": "2", "STREAMER_PIPELINE__DETECTOR__PROFILE": "fast"},
        ["--camera", "cam=pattern://320x180@10"],
    )
    stream = f"{srv.url}/api/cameras/cam/stream.mjpeg"
    odd = httpx.get(stream, params={"height": 177})
    assert odd.status_code == 422 and "240" in odd.json()["detail"]
    assert httpx.get(f"{srv.url}/api/cameras/cam/frame.jpeg", params={"height": 1234}).status_code == 422

    streams = [open_stream(stream + "?height=180"), open_stream(stream)]
    refused = httpx.get(stream)
    assert refused.status_code == 503 and refused.json()["error"] == "too_many_streams"
    for sock in streams:
        sock.close()
    time.sleep(0.5)
    again = open_stream(stream)  # closed streams gave their slots back
    again.close()


def test_sigterm_ends_open_streams_after_the_grace_period(start_server):
    srv = start_server(
        {"STREAMER_SERVER__SHUTDOWN_GRACE_S": "1", "STREAMER_PIPELINE__DETECTOR__PROFILE": "fast"},
        ["--camera", "cam=pattern://320x180@10"],
    )
    watching = open_stream(f"{srv.url}/api/cameras/cam/stream.mjpeg")
    try:
        srv.process.terminate()
        started = time.monotonic()
        srv.process.wait(timeout=15)  # it waited for the stream's end for ever
        assert time.monotonic() - started < 8
    finally:
        watching.close()


@pytest.mark.parametrize("body, content_type, status", [
    (b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 \xff\xfe\r\n" + b"a=garbage\r\n" * 50, "application/sdp", 400),
    (b"m=video" + bytes(range(256)) * 8, "application/sdp", 400),
    (b"no video here", "application/sdp", 400),
    (b"<sdp/>", "application/xml", 415),
])
def test_sdp_garbage_gets_a_json_4xx_and_the_server_goes_on(webrtc_server, body, content_type, status):
    reply = httpx.post(f"{webrtc_server.url}/api/cameras/cam/whep", content=body, headers={"content-type": content_type})
    assert reply.status_code == status and reply.json()["error"]
    bad_json = httpx.post(f"{webrtc_server.url}/api/cameras/cam/offer", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert bad_json.status_code == 422 and bad_json.json()["error"] == "webrtc"
    assert camera(webrtc_server)["state"] == "streaming"
