"""Soak: ``streamer serve`` under a mixed load for a long time, watched for leaks and errors.

    .venv/bin/python bench/soak.py --minutes 30

The server runs two looped cameras: ``door``, the single-face clip served by a local RTSP server
that is stopped for ``--outage-s`` every ``--outage-every-s`` (the camera must come back each
time), and ``desk``, the same clip as a looped file. Beside it, for the whole run:

- a steady stream of still images (a faces-dev photo to /v1/anonymize, one at a time);
- MJPEG viewers that join, watch a few seconds and leave, and whose every 10th frame is checked
  with the accurate detector: a face it finds at score 0.7 or more is a raw frame out (must be 0);
- WebRTC viewers (aiortc over WHEP on loopback) that join, watch a few seconds and leave.

Every ``--report-s`` it prints the server's RSS, open file descriptors and threads, requests made
and failed, frames checked and raw frames out, and each camera's reconnects and state. At the end:
the first and last of those, and the growth of RSS, descriptors and threads after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import simplejpeg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test clip maker, RTSP server and server runner

from clips import SINGLE_FACE, make_clip  # noqa: E402
from conftest import FACES_DEV, Server  # noqa: E402
from machine import cpu  # noqa: E402
from rtsp import RtspServer  # noqa: E402
from viewers import jpeg_parts, watch_over_webrtc  # noqa: E402
from streamer.config import DetectorSettings  # noqa: E402
from streamer.faces.detectors import create_detector  # noqa: E402

LEAK_SCORE = 0.7  # the raw face scores over 0.9 (tests/test_webui.py)


@dataclass
class Counts:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    failed: int = 0
    frames_checked: int = 0
    raw_frames_out: int = 0
    webrtc_sessions: int = 0
    webrtc_frames: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, **changes: int) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self, key, getattr(self, key) + value)

    def fail(self, what: str) -> None:
        with self.lock:
            self.failed += 1
            if len(self.errors) < 20:
                self.errors.append(what)


def process_figures(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.split():
            fields[key] = value.split()[0]
    return {"rss_mb": int(fields["VmRSS"]) // 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(fields["Threads"])}


def stills(url: str, stop: threading.Event, counts: Counts) -> None:
    photo = next(FACES_DEV.rglob("*.jpg")).read_bytes()
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            try:
                reply = client.post(url + "/v1/anonymize", content=photo, headers={"content-type": "image/jpeg"})
                counts.add(requests=1)
                if reply.status_code not in (200, 503):
                    counts.fail(f"still: {reply.status_code} {reply.text[:100]}")
            except httpx.HTTPError as exc:
                counts.add(requests=1)
                counts.fail(f"still: {exc!r}")
            stop.wait(0.5)


def mjpeg_viewers(url: str, stop: threading.Event, counts: Counts) -> None:
    """Viewers one after another: each watches a camera for 2-8 s; every 10th frame is checked."""
    detector = create_detector(DetectorSettings())
    rng = random.Random(1)
    try:
        while not stop.is_set():
            camera = rng.choice(["door", "desk"])
            until = time.monotonic() + rng.uniform(2, 8)
            try:
                with httpx.stream("GET", f"{url}/api/cameras/{camera}/stream.mjpeg", timeout=30) as reply:
                    counts.add(requests=1)
                    if reply.status_code != 200:
                        counts.fail(f"mjpeg {camera}: {reply.status_code}")
                        stop.wait(1)
                        continue
                    for n, frame in enumerate(jpeg_parts(reply.iter_bytes())):
                        if n % 10 == 0:
                            pixels = simplejpeg.decode_jpeg(frame, colorspace="RGB")
                            raw = bool(detector.detect(pixels, LEAK_SCORE))
                            counts.add(frames_checked=1, raw_frames_out=int(raw))
                        if time.monotonic() > until or stop.is_set():
                            break
            except httpx.HTTPError as exc:
                # a camera between reconnects may answer nothing for a while; that is not an error
                if not isinstance(exc, httpx.ReadTimeout):
                    counts.fail(f"mjpeg {camera}: {exc!r}")
    finally:
        detector.close()


def webrtc_viewers(url: str, stop: threading.Event, counts: Counts) -> None:
    """Viewers one after another, each watching a camera over WHEP for 3-10 s."""
    from streamer.outputs.webrtc import use_host_addresses

    use_host_addresses(("127.0.0.1",))
    rng = random.Random(2)
    while not stop.is_set():
        camera = rng.choice(["door", "desk"])
        counts.add(requests=1)
        try:
            frames = asyncio.run(watch_over_webrtc(f"{url}/api/cameras/{camera}/whep", rng.uniform(3, 10)))
            counts.add(webrtc_sessions=1, webrtc_frames=frames)
        except Exception as exc:  # noqa: BLE001 - any failure of a session is counted, the soak goes on
            counts.fail(f"webrtc {camera}: {exc!r}")
        stop.wait(1)


def outages(rtsp: RtspServer, every_s: float, outage_s: float, stop: threading.Event, log: list[float]) -> None:
    while not stop.wait(every_s):
        rtsp.stop()
        log.append(time.monotonic())
        if stop.wait(outage_s):
            return
        rtsp.start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--report-s", type=float, default=60)
    parser.add_argument("--outage-every-s", type=float, default=120)
    parser.add_argument("--outage-s", type=float, default=10)
    parser.add_argument("--warmup-s", type=float, default=120, help="growth is measured from this point on")
    args = parser.parse_args()
    print(f"machine: {cpu()}")
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")

    folder = ROOT / ".cache" / "soak"
    folder.mkdir(parents=True, exist_ok=True)
    clip = make_clip(SINGLE_FACE, folder, seconds=6, width=640, height=360)
    rtsp = RtspServer({"door": clip}, log_dir=folder).start()
    server = Server(
        {"STREAMER_WEBRTC__HOST_ADDRESSES": "[127.0.0.1]", "STREAMER_WEBRTC__CODECS": "[vp8]",
         "STREAMER_PIPELINE__RECONNECT_BACKOFF_S": "[1, 2]", "STREAMER_SERVER__WORKERS": "1"},
        ["--camera", f"door={rtsp.url('door')}", "--camera", f"desk={clip}"],
        log=folder / "server.log",
    )
    server.wait_ready()
    counts, stop, cut = Counts(), threading.Event(), []
    workers = [
        threading.Thread(target=stills, args=(server.url, stop, counts), daemon=True),
        threading.Thread(target=mjpeg_viewers, args=(server.url, stop, counts), daemon=True),
        threading.Thread(target=webrtc_viewers, args=(server.url, stop, counts), daemon=True),
        threading.Thread(target=outages, args=(rtsp, args.outage_every_s, args.outage_s, stop, cut), daemon=True),
    ]
    for worker in workers:
        worker.start()
    started = time.monotonic()
    rows: list[dict] = []
    try:
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            time.sleep(min(args.report_s, args.minutes * 60 - elapsed))
            cameras = {c["name"]: c for c in httpx.get(server.url + "/api/cameras", timeout=10).json()}
            row = {"t_min": round((time.monotonic() - started) / 60, 1), **process_figures(server.pid),
                   "requests": counts.requests, "failed": counts.failed, "checked": counts.frames_checked,
                   "raw_out": counts.raw_frames_out, "webrtc": counts.webrtc_sessions, "outages": len(cut),
                   "door": f"{cameras['door']['state']}/{cameras['door']['reconnects']}",
                   "desk_fps": cameras["desk"]["fps"]["output"]}
            rows.append(row)
            print(" ".join(f"{key}={value}" for key, value in row.items()), flush=True)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        server.stop()
        rtsp.stop()
    after_warmup = [row for row in rows if row["t_min"] * 60 >= args.warmup_s] or rows
    first, last = after_warmup[0], rows[-1]
    print(f"\n{args.minutes:g} min: {counts.requests} requests, {counts.failed} failed, "
          f"{counts.frames_checked} MJPEG frames checked, {counts.raw_frames_out} raw frames out, "
          f"{counts.webrtc_sessions} WebRTC sessions ({counts.webrtc_frames} frames), {len(cut)} RTSP outages")
    print(f"after warm-up (t={first['t_min']} -> {last['t_min']} min): RSS {first['rss_mb']} -> {last['rss_mb']} MB, "
          f"fds {first['fds']} -> {last['fds']}, threads {first['threads']} -> {last['threads']}")
    for error in counts.errors:
        print("error:", error)
    return 0 if counts.raw_frames_out == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
