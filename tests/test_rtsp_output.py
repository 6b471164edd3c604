"""The anonymized RTSP feed: read by real clients (ffprobe, ffmpeg, PyAV) over TCP and UDP, at the
camera's rate, with faces and privacy zones hidden, through an outage of the camera's source, and
behind the same logins and grants as HTTP."""

from __future__ import annotations

import subprocess
import threading
import time

import av
import httpx
import numpy as np
import pytest

from conftest import camera, wait_for
from rtsp import rtsp_servers  # noqa: F401  (fixture)
from streamer.config import DetectorSettings
from streamer.faces.detectors import create_detector
from test_auth import PASSWORDS, site, users_cli  # noqa: F401  (site is a fixture)
from test_pipeline import face_clip  # noqa: F401  (fixture)
from test_zones import LEFT, LEFT_BOX, dark


def rtsp_url(server, name: str = "door") -> str:
    return camera(server, name)["outputs"]["rtsp"]


def read_frames(url: str, seconds: float, transport: str = "tcp") -> list[np.ndarray]:
    """Every frame PyAV decodes from ``url`` in ``seconds``."""
    frames = []
    with av.open(url, options={"rtsp_transport": transport, "stimeout": "10000000"}, timeout=15) as container:
        deadline = time.monotonic() + seconds
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if time.monotonic() > deadline:
                break
    return frames


def ffprobe(url: str, transport: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", transport, "-select_streams", "v:0",
         "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", url],
        capture_output=True, text=True, timeout=60,
    )


@pytest.fixture(scope="module")
def feed(start_server, face_clip, tmp_path_factory):  # noqa: F811
    zones = tmp_path_factory.mktemp("feed") / "zones.yaml"
    zones.write_text("door:\n  - {mode: black, points: %s}\n" % LEFT["points"])
    return start_server(
        {"STREAMER_PIPELINE__ZONES_FILE": str(zones), "STREAMER_DETECTOR__PROFILE": "fast"},
        ["--camera", f"door={face_clip}"],
    )


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ffprobe_sees_the_h264_feed_over_tcp_and_udp(feed, transport):
    probe = ffprobe(rtsp_url(feed), transport)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "h264,640,360"


def test_a_client_reads_the_feed_at_the_cameras_rate_with_faces_and_zones_hidden(feed):
    before = camera(feed, "door")["frames"]["output"]
    frames = read_frames(rtsp_url(feed), seconds=30)
    produced = camera(feed, "door")["frames"]["output"] - before
    assert len(frames) >= 0.9 * produced and produced >= 30 * 15  # every frame the camera made, at its rate
    detector = create_detector(DetectorSettings())
    try:
        shown = [n for n, frame in enumerate(frames[::10]) if detector.detect(frame, 0.7)]
    finally:
        detector.close()
    assert shown == []
    assert all(dark(frame, LEFT_BOX) for frame in frames[::10])
    status = camera(feed, "door")
    assert status["webrtc_encoders"] == {} or status["webrtc_encoders"]["h264"]["viewers"] == 0  # the client left


def test_ffmpeg_records_the_feed(feed, tmp_path):
    out = tmp_path / "door.mp4"
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", rtsp_url(feed), "-t", "3", "-c", "copy", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) >= 30  # a playable file of the anonymized video


def test_through_an_outage_of_the_source_the_client_sees_black_then_video_again(rtsp_servers, start_server, face_clip):  # noqa: F811
    source = rtsp_servers({"cam": face_clip})
    srv = start_server({"STREAMER_PIPELINE__RECONNECT_BACKOFF_S": "[3]", "STREAMER_PIPELINE__READ_TIMEOUT_S": "2",
                        "STREAMER_PIPELINE__DETECTOR__PROFILE": "fast"}, ["--camera", f"cam={source.url('cam')}"])
    wait_for(lambda: camera(srv)["state"] == "streaming", 30, "the camera to stream")
    seen: list[str] = []

    def watch() -> None:
        for frame in read_frames(rtsp_url(srv, "cam"), seconds=16):
            kind = "black" if frame.mean() < 3 else "video"
            if not seen or seen[-1] != kind:
                seen.append(kind)

    reader = threading.Thread(target=watch)
    reader.start()
    time.sleep(3)
    source.stop()  # the camera goes away for a while...
    time.sleep(4)
    source.start()  # ...and comes back on the same URL
    reader.join(timeout=60)
    assert seen[:3] == ["video", "black", "video"], seen  # the feed never broke: fail-closed frames, then video


def test_two_clients_of_one_camera_cost_one_encode(feed):
    counts: list[int] = []
    readers = [threading.Thread(target=lambda: counts.append(len(read_frames(rtsp_url(feed), seconds=6))))
               for _ in range(2)]
    for reader in readers:
        reader.start()
    wait_for(lambda: camera(feed, "door")["webrtc_encoders"].get("h264", {}).get("viewers") == 2, 20, "both playing")
    first = camera(feed, "door")
    time.sleep(3)
    second = camera(feed, "door")
    for reader in readers:
        reader.join(timeout=60)
    assert first["webrtc_encoders"]["h264"]["viewers"] == second["webrtc_encoders"]["h264"]["viewers"] == 2
    encoded = second["webrtc_encoders"]["h264"]["frames"] - first["webrtc_encoders"]["h264"]["frames"]
    captured = second["frames"]["output"] - first["frames"]["output"]
    assert 0 < encoded <= captured + 3  # one encode per frame, not one per client
    assert min(counts) >= 0.5 * 6 * 25


def test_rtsp_asks_for_a_login_and_a_granted_camera(start_server, site):  # noqa: F811
    srv = start_server({"STREAMER_AUTH__USERS_FILE": str(site["users"])},
                       ["--camera", "door=pattern://320x180@10", "--camera", "yard=pattern://320x180@10"])
    admin = {"Authorization": f"Bearer {httpx.post(srv.url + '/api/login', json={'user': 'alice', 'password': PASSWORDS['alice']}).json()['token']}"}
    url = httpx.get(srv.url + "/api/cameras/door", headers=admin).json()["outputs"]["rtsp"]
    host = url.removeprefix("rtsp://")
    assert "401" in ffprobe(url, "tcp").stderr
    assert ffprobe(f"rtsp://bob:{PASSWORDS['bob']}@{host}", "tcp").stdout.strip() == "h264,320,180"
    assert "403" in ffprobe(f"rtsp://bob:{PASSWORDS['bob']}@{host.replace('/door', '/yard')}", "tcp").stderr
    assert ffprobe(f"rtsp://bob:{site['bob_key']}@{host}", "tcp").returncode == 0  # an API key as the password
    assert "401" in ffprobe(f"rtsp://bob:wrong@{host}", "tcp").stderr
    users_cli(site["users"], "add", "bob", "--cameras", "door", "--password-stdin", password="bobs-new-password\n")
    assert "401" in ffprobe(f"rtsp://bob:{PASSWORDS['bob']}@{host}", "tcp").stderr  # the old one, though remembered
