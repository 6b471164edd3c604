"""The RTSP output's cost and reach: added CPU per camera, glass-to-glass latency, clients per camera.

    .venv/bin/python bench/rtsp.py [--seconds 20] [--clients 1 2 4 8 16]

For each size (720p and 1080p) a ``streamer serve`` runs one ``pattern://WxH@30`` camera (a moving
test card that stamps its capture time, in epoch ms, into a stripe of every frame):

1. CPU: the server's CPU use over ``--seconds`` with no viewer, then with one RTSP client (ffmpeg
   copying the stream to nowhere: no decoding on the client side); the difference is what the
   RTSP output adds (one H.264 encode and the RTP packets).
2. Latency: a PyAV client decodes the feed and reads each frame's stamp against the wall clock:
   capture -> detect/anonymize -> encode -> RTSP -> decode, in one process's clock (p50, p95).
3. Clients: N ffmpeg clients at once (TCP, stream copy) for ``--seconds``; each one's frames a
   second against the camera's output rate. The largest N at which every client gets >= 95% of
   the frames is what one camera serves.
Clients run on the same machine as the server, so their CPU is counted against it too.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import av
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import Server  # noqa: E402
from machine import cpu  # noqa: E402
from test_sources import read_clock  # noqa: E402

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid: int, seconds: float) -> float:
    """The process's CPU use over ``seconds``, in cores."""
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


def ffmpeg_clients(url: str, count: int, seconds: float) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            ["ffmpeg", "-nostdin", "-v", "info", "-rtsp_transport", "tcp", "-i", url, "-t", str(seconds),
             "-c", "copy", "-f", "null", "-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(count)
    ]


def frames_of(client: subprocess.Popen) -> int:
    _, err = client.communicate(timeout=120)
    counts = re.findall(r"frame=\s*(\d+)", err)
    return int(counts[-1]) if counts else 0


def latencies(url: str, seconds: float) -> list[float]:
    """Milliseconds from each frame's capture stamp to its decoding here."""
    found = []
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=15) as container:
        deadline = time.monotonic() + seconds
        for frame in container.decode(video=0):
            now = int(time.time() * 1000) & 0xFFFFFFFF
            found.append((now - read_clock(frame.to_ndarray(format="rgb24"))) & 0xFFFFFFFF)
            if time.monotonic() > deadline:
                break
    return found[30:]  # past the first keyframe's wait


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    print(f"machine: {cpu()}")
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}\n")
    print("| size | server CPU, no viewer | + one RTSP client | added by RTSP | latency p50 / p95 | "
          + " | ".join(f"{n} clients: fps each (min)" for n in args.clients) + " | clients served |")
    print("|---|---|---|---|---|" + "---|" * len(args.clients) + "---|")
    for size in args.sizes:
        width, height = SIZES[size]
        # every client is on this machine, so one address: its stream cap is lifted
        server = Server({"STREAMER_SERVER__WORKERS": "1", "STREAMER_DETECTOR__PROFILE": "fast",
                         "STREAMER_SERVER__MAX_STREAMS_PER_USER": "64"},
                        ["--camera", f"pattern=pattern://{width}x{height}@30"])
        try:
            server.wait_ready()
            status = httpx.get(server.url + "/api/cameras/pattern").json()
            url = status["outputs"]["rtsp"]
            time.sleep(3)
            idle = cpu_share(server.pid, args.seconds)
            (client,) = ffmpeg_clients(url, 1, args.seconds + 4)
            time.sleep(2)
            one = cpu_share(server.pid, args.seconds)
            frames_of(client)
            waits = sorted(latencies(url, min(args.seconds, 10)))
            served, cells = 0, []
            for count in args.clients:
                before = httpx.get(server.url + "/api/cameras/pattern").json()["frames"]["output"]
                started = time.monotonic()
                clients = ffmpeg_clients(url, count, args.seconds)
                got = [frames_of(c) for c in clients]
                elapsed = time.monotonic() - started
                made = httpx.get(server.url + "/api/cameras/pattern").json()["frames"]["output"] - before
                camera_fps = made / elapsed
                each = min(got) / args.seconds
                cells.append(f"{each:.1f} (camera {camera_fps:.1f})")
                if each >= 0.95 * camera_fps:
                    served = count
            p50 = statistics.median(waits) if waits else float("nan")
            p95 = waits[int(0.95 * (len(waits) - 1))] if waits else float("nan")
            print(f"| {size} | {idle:.2f} cores | {one:.2f} cores | {one - idle:+.2f} cores | {p50:.0f} / {p95:.0f} ms | "
                  + " | ".join(cells) + f" | {served} |", flush=True)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
