"""Privacy zones: always hidden, in every output and every frame, from the config or drawn in the
web UI, kept in the zones file, changed by admins only."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Callable

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image
from playwright.sync_api import sync_playwright

from browser import LOOPBACK_WEBRTC, launch
from conftest import Server, wait_for
from imaging import sharpness
from streamer.config import AnonymizerSettings, CameraSettings, ConfigError, FailMode, PipelineSettings, ZoneSettings, load_settings
from streamer.faces.zones import ZoneMasks
from streamer.live.pipeline import CameraPipeline
from streamer.live.scheduler import DetectionScheduler
from streamer.outputs.webrtc import use_host_addresses
from test_pipeline import BrokenDetector, face_clip  # noqa: F401  (fixture)
from viewers import jpeg_parts

use_host_addresses(("127.0.0.1",))

# The face clip is a portrait clip in a 640x360 frame: its picture spans x = 0.34..0.66, with the
# face in the middle. LEFT covers the picture's left half, the left half of the face with it.
LEFT = {"mode": "black", "points": [[0.3, 0], [0.5, 0], [0.5, 1], [0.3, 1]]}
LEFT_BOX, RIGHT_BOX = (0.3, 0, 0.5, 1), (0.52, 0, 0.64, 1)


def region(pixels: np.ndarray, left: float, top: float, right: float, bottom: float) -> np.ndarray:
    """The pixels inside the fractions given, a few pixels in from each edge (codecs smear edges)."""
    h, w = pixels.shape[:2]
    return pixels[int(top * h) + 4 : int(bottom * h) - 4, int(left * w) + 4 : int(right * w) - 4]


def test_a_zone_hides_every_pixel_it_covers_and_nothing_else():
    pixels = np.random.default_rng(0).integers(1, 256, (360, 640, 3), dtype=np.uint8)
    triangle = ZoneSettings(points=((0.1, 0.1), (0.6, 0.1), (0.1, 0.9)))
    out = ZoneMasks((triangle,)).apply(pixels.copy())
    for x, y in [(0.1, 0.1), (0.6, 0.1), (0.1, 0.9), (0.2, 0.3), (0.35, 0.15)]:  # corners and inside
        assert not out[min(int(y * 360), 359), min(int(x * 640), 639)].any(), (x, y)
    assert np.array_equal(out[:30], pixels[:30]) and np.array_equal(out[:, 400:][200:], pixels[:, 400:][200:])


def test_a_blur_zone_leaves_nothing_recognisable_and_zones_follow_the_resolution():
    pixels = np.random.default_rng(1).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    zone = ZoneSettings(points=((0.5, 0.5), (1, 0.5), (1, 1), (0.5, 1)), mode="blur")
    out = ZoneMasks((zone,)).apply(pixels.copy())
    assert sharpness(region(out, 0.5, 0.5, 1, 1)) < 0.05 * sharpness(region(pixels, 0.5, 0.5, 1, 1))
    small = ZoneMasks((zone,)).apply(pixels[::2, ::2].copy())
    assert sharpness(region(small, 0.5, 0.5, 1, 1)) < 0.05 * sharpness(region(pixels[::2, ::2], 0.5, 0.5, 1, 1))


def test_zone_points_outside_the_picture_are_refused_naming_the_key(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("cameras:\n  - {name: door, source: x.mp4, zones: [{points: [[0, 0], [1.5, 0], [0, 1]]}]}\n")
    with pytest.raises(ConfigError, match=r"cameras\.0\.zones\.0\.points"):
        load_settings(config)


def test_a_zone_stays_hidden_while_the_detector_fails(face_clip):  # noqa: F811
    pipe = CameraPipeline(
        CameraSettings(name="door", source=str(face_clip), zones=(ZoneSettings(**LEFT),)),
        PipelineSettings(fail_mode=FailMode.blur), AnonymizerSettings(), DetectionScheduler(BrokenDetector, 0.3),
    )
    pipe.start()
    try:
        wait_for(lambda: pipe.hub.latest is not None and pipe.hub.latest.seq > 10, 20, "frames")
        frame = pipe.hub.latest.pixels
    finally:
        pipe.stop()
    assert pipe.fail_closed >= 10  # the whole frame is blurred while detection fails...
    assert not region(frame, *LEFT_BOX).any()  # ...and the zone is still black on top


# --------------------------------------------------------------------------------------------
# a real server: the zone from its config file, and one drawn through the API and the web UI


@pytest.fixture(scope="module")
def zoned(start_server, face_clip, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("zoned")
    config = folder / "streamer.yaml"
    config.write_text(yaml.safe_dump({
        "pipeline": {"detector": {"profile": "fast"}, "zones_file": "zones.yaml"},
        "detector": {"profile": "fast"},
        "webrtc": {"host_addresses": ["127.0.0.1"], "codecs": ["vp8"]},
        "cameras": [{"name": "door", "source": str(face_clip), "zones": [LEFT]}],
    }))
    server = start_server({**LOOPBACK_WEBRTC, "STREAMER_CONFIG": str(config)}, [])
    return {"server": server, "zones_file": folder / "zones.yaml", "config": config}


def mjpeg_pixels(url: str, count: int) -> list[np.ndarray]:
    frames = []
    with httpx.stream("GET", url, timeout=20) as reply:
        for part in jpeg_parts(reply.iter_bytes()):
            frames.append(np.asarray(Image.open(io.BytesIO(part)).convert("RGB")))
            if len(frames) == count:
                return frames
    raise AssertionError("the stream ended")


def snapshot_once(server: Server, shows: Callable[[np.ndarray], bool], timeout: float = 10) -> np.ndarray:
    """The camera's newest frame, polled until ``shows`` holds for it (a zone applies from the next
    frame anonymized: frames already past the anonymizer go out as they were)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = httpx.get(server.url + "/api/cameras/door/frame.jpeg", timeout=10)
        if reply.status_code == 200:
            frame = np.asarray(Image.open(io.BytesIO(reply.content)).convert("RGB"))
            if shows(frame):
                return frame
        assert time.monotonic() < deadline, "no frame showed the change"
        time.sleep(0.1)


def webrtc_pixels(url: str, count: int) -> list[np.ndarray]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    async def watch() -> list[np.ndarray]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        got: list[np.ndarray] = []
        done = asyncio.Event()

        @pc.on("track")
        def on_track(track) -> None:
            async def pull() -> None:
                while len(got) < count:
                    got.append((await track.recv()).to_ndarray(format="rgb24"))
                done.set()

            asyncio.ensure_future(pull())

        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(timeout=20) as client:
            reply = await client.post(url, content=pc.localDescription.sdp, headers={"content-type": "application/sdp"})
            assert reply.status_code == 201
            await pc.setRemoteDescription(RTCSessionDescription(sdp=reply.text, type="answer"))
            await asyncio.wait_for(done.wait(), 20)
        await pc.close()
        return got

    return asyncio.run(watch())


def dark(pixels: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    return float(region(pixels, *box).mean()) < 12  # black, give or take the codec


def test_a_configured_zone_is_hidden_in_every_output_from_the_first_frame(zoned):
    url = zoned["server"].url + "/api/cameras/door"
    frames = mjpeg_pixels(url + "/stream.mjpeg", 20)
    assert all(dark(frame, LEFT_BOX) for frame in frames)  # the first frame too
    assert not dark(frames[-1], RIGHT_BOX)  # the rest of the picture is there
    snapshot = np.asarray(Image.open(io.BytesIO(httpx.get(url + "/frame.jpeg").content)).convert("RGB"))
    assert dark(snapshot, LEFT_BOX)
    assert all(dark(frame, LEFT_BOX) for frame in webrtc_pixels(url + "/whep", 10))


def test_zones_put_through_the_api_apply_at_once_and_are_kept(zoned):
    url = zoned["server"].url + "/api/cameras/door/zones"
    right = {"mode": "black", "points": [[0.5, 0], [0.7, 0], [0.7, 1], [0.5, 1]]}
    reply = httpx.put(url, json={"zones": [right]})
    assert reply.status_code == 200 and httpx.get(url).json()["zones"] == [right]
    frame = snapshot_once(zoned["server"], lambda f: dark(f, RIGHT_BOX))
    assert not dark(frame, (0.36, 0, 0.48, 1))  # replaced, not added
    kept = yaml.safe_load(zoned["zones_file"].read_text())
    assert kept["door"][0]["points"] == right["points"]
    bad = httpx.put(url, json={"zones": [{"points": [[0, 0], [2, 0], [0, 1]]}]})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_parameter"


def test_drawn_zones_survive_a_restart(zoned, tmp_path):
    zoned["zones_file"].write_text(yaml.safe_dump({"door": [LEFT]}))
    again = Server({**LOOPBACK_WEBRTC, "STREAMER_CONFIG": str(zoned["config"])}, [])
    try:
        again.wait_ready()
        assert httpx.get(again.url + "/api/cameras/door/zones").json()["zones"] == [LEFT]
    finally:
        again.stop()
    zoned["zones_file"].write_text("door: [{points: nonsense}]\n")
    broken = Server({"STREAMER_CONFIG": str(zoned["config"])}, [])
    assert broken.process.wait(timeout=60) == 2 and "zones file" in broken.output()  # not started without them
    put = httpx.put(zoned["server"].url + "/api/cameras/door/zones", json={"zones": [LEFT]})
    assert put.status_code == 409 and "zones file" in put.json()["detail"]  # the running one says why
    zoned["zones_file"].write_text(yaml.safe_dump({"door": [LEFT]}))


def test_an_admin_draws_a_zone_in_the_web_ui_and_the_next_frames_hide_it(zoned):
    server = zoned["server"]
    httpx.put(server.url + "/api/cameras/door/zones", json={"zones": []})
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server.url + "/?transport=mjpeg")
            page.click('.tile[data-camera="door"] .edit-zones', timeout=20000)
            canvas = page.locator("#zones canvas")
            canvas.wait_for()
            box = canvas.bounding_box()
            corners = [(0.5, 0.05), (0.68, 0.05), (0.68, 0.95), (0.5, 0.95), (0.45, 0.5)]
            for x, y in corners:
                page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
            page.click("#zones .zones-close")
            page.mouse.dblclick(box["x"] + 0.45 * box["width"], box["y"] + 0.5 * box["height"])  # one corner too many
            page.click("#zones .zones-save")
            page.wait_for_selector("#zones", state="hidden")
        finally:
            browser.close()
    (zone,) = httpx.get(server.url + "/api/cameras/door/zones").json()["zones"]
    assert len(zone["points"]) == 4 and abs(zone["points"][0][0] - 0.5) < 0.02
    drawn = (0.51, 0.06, 0.67, 0.94)
    frame = snapshot_once(server, lambda f: dark(f, drawn))
    assert not dark(frame, (0.36, 0, 0.48, 1))
