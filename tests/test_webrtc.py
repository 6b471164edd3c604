"""WebRTC signalling and the shared encoder, with aiortc as a WHEP client on loopback."""

from __future__ import annotations

import asyncio

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from conftest import camera
from streamer.outputs.webrtc import use_host_addresses

use_host_addresses(("127.0.0.1",))  # this test process's aiortc client stays on loopback too


async def whep_client(url: str, seconds: float) -> dict:
    """Watch a camera with aiortc over WHEP; answers what happened."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN server: nothing leaves loopback
    pc.addTransceiver("video", direction="recvonly")
    frames = []

    @pc.on("track")
    def on_track(track):
        async def pull():
            while True:
                frames.append(await track.recv())

        asyncio.ensure_future(pull())

    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=20) as client:
        reply = await client.post(url, content=pc.localDescription.sdp, headers={"content-type": "application/sdp"})
        assert reply.status_code == 201, reply.text
        assert reply.headers["content-type"].startswith("application/sdp")
        location = reply.headers["location"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply.text, type="answer"))
        await asyncio.sleep(seconds)
        ended = await client.delete(str(httpx.URL(url).join(location)))
    await pc.close()
    return {"frames": len(frames), "answer": reply.text, "location": location, "delete": ended.status_code,
            "size": (frames[-1].width, frames[-1].height) if frames else None}


def test_whep_answers_201_with_location_and_delete_ends_the_session(live_server):
    url = f"{live_server.url}/api/cameras/cam/whep"
    options = httpx.options(url)
    assert options.status_code == 204 and options.headers["accept-post"] == "application/sdp"
    result = asyncio.run(whep_client(url, seconds=3))
    assert result["location"].startswith("/api/cameras/cam/whep/")
    assert "H264" in result["answer"]  # aiortc offers H.264, and it is our first choice
    assert result["frames"] >= 30 and result["size"] == (640, 360)
    assert result["delete"] == 200
    assert camera(live_server)["webrtc_sessions"] == 0
    bad = httpx.post(url, content="v=0", headers={"content-type": "application/sdp"})
    assert bad.status_code == 400 and bad.json()["error"]
    assert httpx.post(url, content="{}", headers={"content-type": "application/json"}).status_code == 415


def test_several_viewers_share_one_encoder(live_server):
    url = f"{live_server.url}/api/cameras/cam/whep"

    async def viewers() -> tuple[dict, list[dict]]:
        results = asyncio.gather(*(whep_client(url, seconds=4) for _ in range(3)))
        await asyncio.sleep(2.5)
        async with httpx.AsyncClient() as client:
            during = (await client.get(f"{live_server.url}/api/cameras/cam")).json()
        return during, await results

    during, results = asyncio.run(viewers())
    assert during["webrtc_sessions"] == 3
    assert list(during["webrtc_encoders"]) == ["h264"]  # one encoder for the camera's codec...
    assert during["webrtc_encoders"]["h264"]["viewers"] == 3  # ...serving every viewer
    assert all(r["frames"] >= 30 for r in results)
