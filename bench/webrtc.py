"""Capture-to-browser latency of the WebRTC view, and the server's CPU cost per extra viewer.

The server runs a ``pattern://`` camera, whose frames carry their capture time (epoch ms) as a
stripe of black and white cells. Headless Chromium opens the web UI once per viewer; in each
page, ``requestVideoFrameCallback`` reads the stripe of every displayed frame back from a canvas
and subtracts it from the frame's expected display time. Usage:

    python bench/webrtc.py [--size 1280x720] [--viewers 1 4] [--seconds 15]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the real-browser launcher and the server runner

from browser import LOOPBACK_WEBRTC, launch  # noqa: E402
from conftest import Server  # noqa: E402

from machine import cpu  # noqa: E402
from streamer.live.sources import CLOCK_BITS, clock_stripe_height  # noqa: E402

# Installed in each page: collects latencies (ms) of displayed frames into window.latencies.
MEASURE_JS = """([bits, stripe]) => {
  window.latencies = [];
  const video = document.querySelector("video");
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const onFrame = (now, meta) => {
    canvas.width = video.videoWidth; canvas.height = stripe;
    context.drawImage(video, 0, 0, video.videoWidth, stripe, 0, 0, video.videoWidth, stripe);
    const row = context.getImageData(0, Math.floor(stripe / 2), video.videoWidth, 1).data;
    let stamp = 0, clear = true;
    for (let bit = 0; bit < bits; bit++) {
      const x = Math.floor((bit + 0.5) * video.videoWidth / bits);
      const level = row[4 * x];
      clear = clear && (level < 60 || level > 195);
      stamp = stamp * 2 + (level > 127 ? 1 : 0);
    }
    if (clear) {
      const shown = (performance.timeOrigin + meta.expectedDisplayTime) % 4294967296;
      let latency = shown - stamp;
      if (latency < -2147483648) latency += 4294967296;
      window.latencies.push(latency);
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(server: Server, browser, viewers: int, seconds: float, stripe: int) -> dict:
    pages = []
    for _ in range(viewers):
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_selector('.transport[data-transport="webrtc"]', timeout=30000)
        pages.append(page)
    time.sleep(2)  # past the first keyframes
    for page in pages:
        page.evaluate(MEASURE_JS, [CLOCK_BITS, stripe])
    cpu0, wall0 = cpu_seconds(server.process.pid), time.monotonic()
    time.sleep(seconds)
    cpu = (cpu_seconds(server.process.pid) - cpu0) / (time.monotonic() - wall0) * 100
    latencies = np.concatenate([np.asarray(page.evaluate("() => window.latencies"), dtype=float) for page in pages])
    for page in pages:
        page.close()
    time.sleep(1)
    return {
        "viewers": viewers,
        "frames": len(latencies),
        "fps_per_viewer": len(latencies) / seconds / viewers,
        "p50": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        "p95": float(np.percentile(latencies, 95)) if len(latencies) else float("nan"),
        "cpu": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--viewers", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    command = shlex.join(["python", "bench/webrtc.py", *sys.argv[1:]])
    height = int(args.size.split("x")[1])
    server = Server(LOOPBACK_WEBRTC, ["--camera", f"clock=pattern://{args.size}@30"])
    try:
        server.wait_ready()
        time.sleep(2)
        idle_cpu0, idle_wall0 = cpu_seconds(server.process.pid), time.monotonic()
        time.sleep(5)
        idle = (cpu_seconds(server.process.pid) - idle_cpu0) / (time.monotonic() - idle_wall0) * 100
        with sync_playwright() as playwright:
            browser = launch(playwright)
            rows = [measure(server, browser, n, args.seconds, clock_stripe_height(height)) for n in args.viewers]
            browser.close()
    finally:
        server.stop()
    print(f"command: {command}")
    print(f"machine: {cpu()}; camera pattern://{args.size}@30; server CPU with no viewer: "
          f"{idle:.0f}% of one core (capture, detect, anonymize, publish)")
    print()
    print("| viewers | frames measured | fps per viewer | latency p50 ms | latency p95 ms | server CPU % |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['viewers']} | {r['frames']} | {r['fps_per_viewer']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} "
              f"| {r['cpu']:.0f} |")
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        extra = (last["cpu"] - first["cpu"]) / (last["viewers"] - first["viewers"])
        print()
        print(f"server CPU per extra viewer: {extra:.1f}% of one core "
              f"(({last['cpu']:.0f} - {first['cpu']:.0f}) / {last['viewers'] - first['viewers']})")
    print(f"command: {command}")


if __name__ == "__main__":
    main()
