"""Shared fixtures: the faces-dev data, and a real streamer server on a loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import cv2
import httpx
import numpy as np
import pytest

from streamer.faces.detection import iou

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
FACES_DEV = SHARED / "faces-dev"


@pytest.fixture(autouse=True)
def no_streamer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings loaded in a test come from its files and its own STREAMER_* variables only."""
    for name in [name for name in os.environ if name.startswith("STREAMER_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def faces_dev() -> list[dict]:
    """The faces-dev annotations (images with labelled face boxes)."""
    path = FACES_DEV / "annotations.json"
    if not path.exists():
        pytest.fail(f"faces-dev data not found at {FACES_DEV}; set SHARED_DATA to the shared/data folder")
    return json.loads(path.read_text())["images"]


@pytest.fixture(scope="session")
def easy_images(faces_dev: list[dict]) -> list[dict]:
    """Images whose one to three faces are all at least 64 px tall: any detector must find these."""
    easy = [
        im for im in faces_dev
        if 1 <= len(im["faces"]) <= 3 and min(f[3] for f in im["faces"]) >= 64 and not im.get("ignore")
    ]
    return easy[:12]


def read_rgb(entry: dict) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(FACES_DEV / entry["file"])), cv2.COLOR_BGR2RGB)


def matched_faces(detector, images: list[dict], max_height: float = float("inf"), threshold: float = 0.3) -> int:
    """Labelled faces under ``max_height`` px that one of the detector's boxes matches at IoU 0.5."""
    found = 0
    for entry in images:
        faces = detector.detect(read_rgb(entry), threshold)
        for truth in entry["faces"]:
            if truth[3] < max_height:
                found += any(iou(face.box, truth) >= 0.5 for face in faces)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``streamer serve`` as a user runs it, in its own process, on a free loopback port (the
    tests' servers, and the benchmarks').

    Its output goes to ``log`` or a temporary file, not a pipe: a pipe nobody reads fills up with
    log lines and then blocks the server. ``root`` runs another source tree (say an older version
    a benchmark compares with); ``port`` starts it on a given port (say again after a crash).
    """

    def __init__(
        self, env: dict[str, str], args: list[str], root: Path = ROOT, log: Path | None = None, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "streamer", "serve", "--port", str(self.port), *args]
        env = {"STREAMER_RTSP__PORT": "0", **env}  # any free port: several servers run side by side
        self._log = log.open("w+b") if log else tempfile.TemporaryFile()
        if root != ROOT:
            env = {**env, "PYTHONPATH": str(root)}
        self.process = subprocess.Popen(
            self.command, cwd=root, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.pid = self.process.pid

    def output(self) -> str:
        """Everything the server printed so far (the temporary file goes when the test process ends)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server did not become ready")

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.output()


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    srv = Server({"STREAMER_SERVER__WORKERS": "2", "STREAMER_IMAGE__MAX_BYTES": "3000000"}, ["--no-cameras"])
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def start_server() -> Iterator:
    """Start extra servers with their own settings; all are stopped after the test module, so
    that their cameras do not take CPU from later tests."""
    started: list[Server] = []

    def start(env: dict[str, str], args: list[str] = ("--no-cameras",)) -> Server:
        srv = Server(env, list(args))
        started.append(srv)
        srv.wait_ready()
        return srv

    yield start
    for srv in started:
        srv.stop()


def camera(server: Server, name: str = "cam") -> dict:
    """A camera's status from the server's API."""
    return httpx.get(f"{server.url}/api/cameras/{name}").json()


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    """Poll ``predicate`` every ``every`` seconds until it is truthy; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def live_server(start_server, tmp_path_factory) -> Server:
    """A server with one camera, ``cam``: the single-face clip at 640x360, looped in real time."""
    from browser import LOOPBACK_WEBRTC
    from clips import SINGLE_FACE, make_clip

    clip = make_clip(SINGLE_FACE, tmp_path_factory.mktemp("clips"), seconds=4, width=640, height=360)
    return start_server(LOOPBACK_WEBRTC, ["--camera", f"cam={clip}"])
