"""Offline for real: ``streamer serve`` at work writes no file and opens no outbound connection.

The server runs as a user runs it, under ``strace``, with TMPDIR, HOME, every XDG folder and its
working directory set to fresh empty folders, and with none of this process's environment (so a
variable that the test process happens to have, such as ``ORT_DISABLE_TELEMETRY``, cannot hide a
regression). It serves still images (MediaPipe), a camera over MJPEG (CenterFace on onnxruntime)
and a WebRTC viewer (aiortc). Afterwards every watched folder must still be empty, and every
``connect``, ``sendto`` and ``sendmsg`` to an IP address must have gone to loopback.

What this caught: onnxruntime 1.32 writing its telemetry session file (``.ses``) into TMPDIR and a
device id and event database under XDG_CACHE_HOME; matplotlib (imported by mediapipe) creating
its config folder and font cache; aiortc asking Google's STUN server for every WebRTC session.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import FACES_DEV, ROOT, free_port, wait_for
from streamer.outputs.webrtc import use_host_addresses
from viewers import watch_over_webrtc

use_host_addresses(("127.0.0.1",))  # this test process's aiortc client stays on loopback too

DEMO_CLIP = ROOT / "streamer" / "assets" / "demo.mp4"
# Folders a library could write to uninvited, each set to its own empty folder for the server.
WATCHED = ("TMPDIR", "HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME",
           "XDG_RUNTIME_DIR", "cwd")
# Socket calls that name where their packets go; strace shows IPv4 and IPv6 addresses like this.
OUTBOUND_CALL = re.compile(r"^\d+\s+(connect|sendto|sendmsg|sendmmsg)\(")
IPV4 = re.compile(r'inet_addr\("([^"]+)"\)')
IPV6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')


def is_loopback(address: str) -> bool:
    """Whether an address is this machine's loopback (127.0.0.0/8, ::1, or 127.x mapped into IPv6)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def off_machine(trace: str) -> list[str]:
    """The traced connect/sendto/sendmsg calls aimed at an IP address other than loopback."""
    return [
        line for line in trace.splitlines()
        if OUTBOUND_CALL.match(line) and not all(map(is_loopback, IPV4.findall(line) + IPV6.findall(line)))
    ]


def new_files(folders: dict[str, Path]) -> list[str]:
    """Everything inside the watched folders (which started empty), as ``NAME/relative/path``."""
    return sorted(f"{name}/{p.relative_to(folder)}" for name, folder in folders.items() for p in folder.rglob("*"))


def mjpeg_parts(url: str, seconds: float) -> int:
    """Read a multipart MJPEG stream for ``seconds``; answers how many JPEGs began in it."""
    count = 0
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", url, timeout=10) as reply:
        assert reply.status_code == 200
        for chunk in reply.iter_bytes():
            count += chunk.count(b"\r\n\r\n\xff\xd8")
            if time.monotonic() > deadline:
                return count
    return count


def traced_server(folders: dict[str, Path], trace: Path, log: Path, port: int) -> subprocess.Popen:
    """``streamer serve`` under strace, in the empty folders, with a clean environment; its output
    goes to ``log`` (outside the watched folders)."""
    env = {name: str(folder) for name, folder in folders.items() if name != "cwd"}
    env |= {
        "PATH": os.environ["PATH"],
        "STREAMER_SERVER__WORKERS": "1",
        "STREAMER_DETECTOR__PROFILE": "fast",  # still images on MediaPipe; the camera runs CenterFace
        "STREAMER_WEBRTC__HOST_ADDRESSES": "[127.0.0.1]",
        "STREAMER_RTSP__PORT": "0",
    }
    command = [
        "strace", "-f", "-qq", "-e", "trace=bind,connect,sendto,sendmsg,sendmmsg", "-o", str(trace),
        sys.executable, "-m", "streamer", "serve", "--port", str(port), "--camera", f"demo={DEMO_CLIP}",
    ]
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=folders["cwd"], env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(tracer: subprocess.Popen) -> None:
    """End the server as a service manager would (SIGTERM), then strace with it."""
    children = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children")
    if tracer.poll() is None and children.exists():
        for pid in children.read_text().split():
            os.kill(int(pid), signal.SIGTERM)
    try:
        tracer.wait(timeout=20)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.wait()


def test_serving_writes_no_file_and_connects_only_to_loopback(tmp_path, easy_images):
    assert shutil.which("strace"), "strace is needed (make test installs it)"
    folders = {name: tmp_path / name for name in WATCHED}
    for folder in folders.values():
        folder.mkdir()
    trace, log = tmp_path / "strace.txt", tmp_path / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tracer = traced_server(folders, trace, log, port)
    try:
        def ready() -> bool:
            assert tracer.poll() is None, f"the server exited: {log.read_text(errors='replace')}"
            try:
                return httpx.get(url + "/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 60, "the server to be ready")
        for entry in easy_images[:3]:
            jpeg = (FACES_DEV / entry["file"]).read_bytes()
            reply = httpx.post(url + "/v1/anonymize", files={"file": ("photo.jpg", jpeg, "image/jpeg")}, timeout=30)
            assert reply.status_code == 200 and int(reply.headers["x-faces-detected"]) >= 1
        assert mjpeg_parts(f"{url}/api/cameras/demo/stream.mjpeg", seconds=3) >= 10
        assert asyncio.run(watch_over_webrtc(f"{url}/api/cameras/demo/whep", seconds=2)) >= 10
        written_while_running = new_files(folders)
    finally:
        stop(tracer)
    assert not written_while_running, f"the server wrote {written_while_running}"
    left = new_files(folders)
    assert not left, f"the server left {left}"
    traced = trace.read_text()
    assert f"htons({port})" in traced, "strace did not see the server bind its port"
    sent = off_machine(traced)
    assert not sent, "the server sent packets off this machine:\n" + "\n".join(sent)
