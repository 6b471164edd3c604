"""End to end: a real RTSP camera -> ``streamer serve`` -> MJPEG and snapshots over loopback HTTP."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from clips import PEDESTRIANS, SINGLE_FACE, make_clip
from conftest import camera, wait_for
from imaging import sharpness
from rtsp import rtsp_servers  # noqa: F401  (fixture)
from streamer.config import DetectorSettings
from streamer.faces.detectors import create_detector
from viewers import jpeg_parts

FAST_RECONNECT = {
    "STREAMER_PIPELINE__RECONNECT_BACKOFF_S": "[0.5, 1]",
    "STREAMER_PIPELINE__READ_TIMEOUT_S": "2",
    "STREAMER_PIPELINE__OPEN_TIMEOUT_S": "3",
    "STREAMER_SERVER__WORKERS": "1",
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "face": make_clip(SINGLE_FACE, folder, seconds=4, width=640, height=360),
        "street": make_clip(PEDESTRIANS, folder, seconds=4, width=640, height=360),
    }


def mjpeg_frames(url: str, count: int, timeout: float = 20) -> list[np.ndarray]:
    """Read ``count`` JPEG parts from a multipart/x-mixed-replace stream."""
    frames: list[np.ndarray] = []
    with httpx.stream("GET", url, timeout=timeout) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("multipart/x-mixed-replace")
        for part in jpeg_parts(reply.iter_bytes()):
            frames.append(np.asarray(Image.open(io.BytesIO(part)).convert("RGB")))
            if len(frames) >= count:
                return frames
    raise AssertionError(f"the stream ended after {len(frames)} frames")


def test_rtsp_camera_is_served_anonymized_over_mjpeg(rtsp_servers, start_server, clips):
    rtsp = rtsp_servers({"cam": clips["face"]})
    url = rtsp.url("cam").replace("rtsp://", "rtsp://viewer:s3cret@")
    srv = start_server(FAST_RECONNECT, ["--camera", f"door={url}"])
    wait_for(lambda: camera(srv, "door")["state"] == "streaming", 15, "the camera to stream")
    wait_for(lambda: camera(srv, "door")["detector"] == "ok", 30, "the detector to load")

    frames = mjpeg_frames(f"{srv.url}/api/cameras/door/stream.mjpeg", 45)
    status = camera(srv, "door")  # before this process's own detector competes for the cores
    assert status["fps"]["output"] >= 20
    detector = create_detector(DetectorSettings())
    try:
        # The raw clip shows a face scoring over 0.9 in every frame; none may survive.
        assert not [i for i, frame in enumerate(frames[15:]) if detector.detect(frame, 0.7)]
    finally:
        detector.close()
    assert sharpness(frames[-1]) > 20  # the scene itself is still there

    assert status["faces"] >= 1
    assert "s3cret" not in str(status) and status["source"].startswith("rtsp://***@")

    small = httpx.get(f"{srv.url}/api/cameras/door/frame.jpeg", params={"height": 180})
    assert small.status_code == 200 and Image.open(io.BytesIO(small.content)).size == (320, 180)
    metrics = httpx.get(f"{srv.url}/metrics").text
    assert 'streamer_frames_total{camera="door",stage="output"}' in metrics
    assert "streamer_capture_to_output_seconds_bucket" in metrics
    # the rates are read from the camera when scraped, not left over from the last status call
    [fps] = [line for line in metrics.splitlines() if line.startswith('streamer_fps{camera="door",stage="output"}')]
    assert float(fps.split()[-1]) > 5
    assert "s3cret" not in srv.stop()  # nor in the server's log


def test_camera_reconnects_after_the_rtsp_server_restarts_and_others_keep_going(
    rtsp_servers, start_server, clips
):
    flaky = rtsp_servers({"cam": clips["face"]})
    steady = rtsp_servers({"cam": clips["street"]})
    srv = start_server(
        FAST_RECONNECT,
        ["--camera", f"flaky={flaky.url('cam')}", "--camera", f"steady={steady.url('cam')}",
         "--camera", "dead=rtsp://127.0.0.1:9/nothing", "--camera", "missing=/no/such/clip.mp4"],
    )
    wait_for(lambda: camera(srv, "flaky")["state"] == "streaming", 15, "flaky to stream")
    wait_for(lambda: camera(srv, "steady")["state"] == "streaming", 15, "steady to stream")

    flaky.stop()
    wait_for(lambda: camera(srv, "flaky")["state"] == "reconnecting", 10, "flaky to notice")
    # While it is down, the other camera still streams and the API still answers.
    assert len(mjpeg_frames(f"{srv.url}/api/cameras/steady/stream.mjpeg", 10)) == 10
    assert camera(srv, "flaky")["last_error"]

    flaky.restart()
    wait_for(lambda: camera(srv, "flaky")["state"] == "streaming", 20, "flaky to come back")
    assert camera(srv, "flaky")["reconnects"] >= 1
    assert len(mjpeg_frames(f"{srv.url}/api/cameras/flaky/stream.mjpeg", 10)) == 10

    dead, missing = camera(srv, "dead"), camera(srv, "missing")
    assert dead["state"] == "reconnecting" and dead["last_error"]
    assert "no such file" in missing["last_error"]
    assert httpx.get(f"{srv.url}/api/cameras/dead/frame.jpeg").status_code == 503
    assert httpx.get(f"{srv.url}/api/cameras/nobody/frame.jpeg").status_code == 404
