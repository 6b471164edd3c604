"""A local RTSP "camera" for tests: tests/rtsp_server.py in its own process, on a loopback port.

    from rtsp import RtspServer, rtsp_servers  # noqa: F401  (rtsp_servers is a fixture)

    def test_camera(rtsp_servers, clip):
        server = rtsp_servers({"cam": clip})
        container = av.open(server.url("cam"), options={"rtsp_transport": "tcp"})
        ...
        server.restart()  # the camera goes away and comes back on the same URL

The server runs under the SYSTEM python (/usr/bin/python3), whose Debian packages python3-gi and
gir1.2-gst-rtsp-server-1.0 provide GStreamer's RTSP server; the venv has no GStreamer. A missing
system package fails the test with the server's own error rather than skipping it silently.
"""

from __future__ import annotations

import itertools
import os
import selectors
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "rtsp_server.py"
SYSTEM_PYTHON = os.environ.get("RTSP_SERVER_PYTHON", "/usr/bin/python3")


_serial = itertools.count(1)


class RtspServer:
    """tests/rtsp_server.py serving ``mounts`` (name -> H.264 MP4 file) at rtsp://127.0.0.1:port/name.

    Without a ``port`` the first start lets the system choose a free one (no race with other
    processes); ``restart()`` then binds the same port again.
    """

    def __init__(self, mounts: Mapping[str, str | Path], port: int | None = None,
                 loop: bool = True, log_dir: str | Path | None = None) -> None:
        if not mounts:
            raise ValueError("an RTSP server needs at least one mount")
        self.mounts = {name.strip("/"): Path(path).resolve() for name, path in mounts.items()}
        for path in self.mounts.values():
            if not path.is_file():
                raise FileNotFoundError(path)
        self.port = port or 0  # 0 until the first start has chosen one
        self.loop = loop
        self.log_path = Path(log_dir or tempfile.gettempdir()) / f"rtsp_server-{os.getpid()}-{next(_serial)}.log"
        self.process: subprocess.Popen[str] | None = None
        self.ready_seconds: float | None = None  # how long the last start took

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("the RTSP server has not been started, so it has no port yet")
        return f"rtsp://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        name = name.strip("/")
        if name not in self.mounts:
            raise KeyError(f"no mount {name!r}; mounts are {sorted(self.mounts)}")
        return f"{self.base_url}/{name}"

    def start(self, timeout: float = 15) -> RtspServer:
        """Start the server and wait for its READY line; raises with its log if it does not come."""
        if self.running:
            raise RuntimeError("the RTSP server is already running")
        if not Path(SYSTEM_PYTHON).exists():
            raise RuntimeError(f"{SYSTEM_PYTHON} not found: the RTSP server needs the system python with python3-gi")
        cmd = [SYSTEM_PYTHON, str(SCRIPT), "--port", str(self.port)]
        for name, path in self.mounts.items():
            cmd += ["--mount", f"/{name}={path}"]
        if not self.loop:
            cmd.append("--no-loop")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a")
        started = time.monotonic()
        try:
            self.process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True,
                # The system python must not pick up the venv's packages.
                env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")},
            )
        finally:
            log.close()
        line = self._read_line(timeout)
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"RTSP server did not start (got {line!r}); its log:\n{self.log()}")
        self.ready_seconds = time.monotonic() - started
        self.port = int(line.rsplit(":", 1)[1])
        return self

    def _read_line(self, timeout: float) -> str:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    return self.process.stdout.readline().strip()  # "" at EOF: the server exited
        return f"nothing within {timeout} s"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 5) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` s; returns the exit status (None if never started)."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def restart(self, timeout: float = 15) -> RtspServer:
        """Stop (if running) and start again on the same port and mounts: a camera that rebooted."""
        self.stop()
        return self.start(timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> RtspServer:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def rtsp_servers(tmp_path: Path) -> Iterator[Callable[..., RtspServer]]:
    """Start RTSP servers: ``rtsp_servers({"cam": clip_path}, loop=True)``; all stop after the test."""
    started: list[RtspServer] = []

    def start(mounts: Mapping[str, str | Path], port: int | None = None, loop: bool = True,
              timeout: float = 15) -> RtspServer:
        server = RtspServer(mounts, port=port, loop=loop, log_dir=tmp_path)
        started.append(server)
        return server.start(timeout)

    yield start
    for server in started:
        server.stop()
