"""A regular wheel of streamer (not the editable checkout) has what the service needs to start:
the default settings, the web UI and the demo camera's clip, found through the package."""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, Server, wait_for


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(built), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = built.glob("streamer-*.whl")
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def test_the_wheel_serves_the_web_ui_and_the_demo_camera(unpacked_wheel: Path):
    srv = Server({"STREAMER_SERVER__WORKERS": "1"}, [], root=unpacked_wheel)
    try:
        srv.wait_ready()
        assert "streamer" in httpx.get(srv.url + "/").text
        assert httpx.get(srv.url + "/cameras.js").status_code == 200
        deadline = time.monotonic() + 30
        while (demo := httpx.get(srv.url + "/api/cameras/demo").json())["state"] != "streaming":
            assert time.monotonic() < deadline, demo
            time.sleep(0.5)
        assert demo["source"].startswith(str(unpacked_wheel / "streamer"))
        # streaming from the first frame captured; the snapshot from the first one anonymized
        frame = wait_for(
            lambda: (reply := httpx.get(srv.url + "/api/cameras/demo/frame.jpeg")).status_code != 503 and reply,
            30, "the first anonymized frame",
        )
        assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    finally:
        srv.stop()
