"""Live pipeline throughput: output fps, drops, latency, CPU and memory for 1, 2 and 4 cameras.

Each run starts N cameras, each a real H.264 file played at its own 30 fps like a camera, with
the configured detector, and measures after a warm-up. Every run is its own process so that its
peak RSS is its own. Usage:

    python bench/pipeline.py [--sizes 640x360 1280x720 1920x1080] [--cameras 1 2 4] [--seconds 10]
                             [--heap kept|default] [--motion] [--clip face|street]

``--clip`` picks what every camera shows: ``face`` (default), a hand-held close face, so most of
the picture moves all the time; ``street``, a fixed CCTV camera over a street with pedestrians
(most of the picture still, as for most security cameras), played at 30 fps.

``--motion`` adds, for each row, the leaks of the motion benchmark's clip (``bench/motion.py``,
seed 1) played as one of the cameras by a ``streamer serve``, the others as in the row: it is
``bench/motion.py --paths live --profiles PROFILE --beside CAMERAS-1 SIZE`` (two to three minutes a row).

``--heap default`` leaves glibc's malloc as it is instead of tuning it as ``streamer`` does at
startup (``streamer/heap.py``), to measure what that tuning does.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test clip maker (ffmpeg over shared/data/video)

from clips import PEDESTRIANS, SINGLE_FACE, make_clip  # noqa: E402

import motion  # noqa: E402
from machine import cpu  # noqa: E402
from motion_clip import DEFAULT_DATA, ClipSpec, build  # noqa: E402
from streamer.config import CameraSettings, load_settings  # noqa: E402
from streamer.heap import keep_freed_buffers  # noqa: E402
from streamer.live.pipeline import CameraPipeline  # noqa: E402
from streamer.live.scheduler import DetectionScheduler  # noqa: E402

CLIPS = ROOT / ".cache" / "bench-clips"
SOURCES = {"face": SINGLE_FACE, "street": PEDESTRIANS}


def run_once(source: str, size: str, cameras: int, seconds: float, warmup: float) -> dict:
    """Run ``cameras`` pipelines on one clip of ``size`` and return the figures."""
    width, height = (int(v) for v in size.split("x"))
    clip = make_clip(source, CLIPS, seconds=10, width=width, height=height, fps=30)
    settings = load_settings()
    detections = DetectionScheduler.for_pipeline(settings.pipeline)
    pipelines = [
        CameraPipeline(
            CameraSettings(name=f"cam{i}", source=str(clip)),
            settings.pipeline,
            settings.anonymizer,
            detections,
        )
        for i in range(cameras)
    ]
    for pipeline in pipelines:
        pipeline.start()
    started = time.monotonic()
    while any(p.status()["detector"] == "starting" for p in pipelines) and time.monotonic() < started + 60:
        time.sleep(0.1)  # every detector thread loads its model first (seconds, when they load side by side)
    time.sleep(warmup)
    before = [pipeline.status() for pipeline in pipelines]
    cpu0, wall0 = os.times(), time.monotonic()
    deadline = wall0 + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
    cpu1, wall1 = os.times(), time.monotonic()
    after = [pipeline.status() for pipeline in pipelines]
    for pipeline in pipelines:
        pipeline.stop()
    elapsed = wall1 - wall0
    cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / elapsed * 100

    def per_camera_rate(key: str, stage: str) -> float:
        total = sum(a[key][stage] - b[key][stage] for a, b in zip(after, before))
        return total / elapsed / cameras

    return {
        "size": size,
        "cameras": cameras,
        "output_fps": per_camera_rate("frames", "output"),
        "detect_fps": per_camera_rate("frames", "detect"),
        "whole_fps": per_camera_rate("frames", "whole"),
        "dropped": {
            stage: sum(a["dropped"][stage] - b["dropped"][stage] for a, b in zip(after, before))
            for stage in ("detect", "anonymize", "encode")
        },
        "fail_closed": sum(a["fail_closed_frames"] - b["fail_closed_frames"] for a, b in zip(after, before)),
        # over each camera's newest 300 output frames; the worst camera is reported
        "latency_p50_ms": max(a["latency_ms"]["p50"] for a in after),
        "latency_p95_ms": max(a["latency_ms"]["p95"] for a in after),
        "cpu_percent": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def motion_cell(settings, size: str, cameras: int) -> str:
    """The motion clip played live beside ``cameras - 1`` cameras of ``size``: leaks and frames hidden whole."""
    clip = build(ClipSpec(1, 20.0, 6), DEFAULT_DATA)
    beside = motion.Beside(cameras - 1, size) if cameras > 1 else None
    with tempfile.TemporaryDirectory(prefix="pipeline-motion-") as workdir, contextlib.redirect_stdout(io.StringIO()):
        row = motion.run_one("live", settings.pipeline.detector.profile, clip, Path(workdir), 32.0, False, beside)
    t = row.tally
    if t is None or not t.face_frames:
        return f" failed: {row.note} |"
    return f" {1000 * t.leaked / t.face_frames:.1f}, {t.hidden_whole} of {t.frames} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["640x360", "1280x720", "1920x1080"])
    parser.add_argument("--cameras", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--heap", choices=["kept", "default"], default="kept",
                        help="kept: malloc tuned as the streamer command does; default: glibc's defaults")
    parser.add_argument("--motion", action="store_true", help="also the motion clip's leaks as one of the cameras")
    parser.add_argument("--clip", choices=sorted(SOURCES), default="face",
                        help="face: a hand-held close face (default); street: a fixed CCTV camera")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "CAMERAS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        if args.heap == "kept":
            keep_freed_buffers()
        print(json.dumps(run_once(SOURCES[args.clip], args.one[0], int(args.one[1]), args.seconds, args.warmup)))
        return

    command = shlex.join(["python", "bench/pipeline.py", *sys.argv[1:]])
    settings = load_settings()
    print(f"command: {command}")
    print(f"machine: {cpu()}, detector: {settings.pipeline.detector.profile} "
          f"({settings.pipeline.detector.backend}), "
          f"source: {SOURCES[args.clip]} re-encoded H.264 30 fps, {args.seconds:g} s measured after {args.warmup:g} s, "
          f"heap: {args.heap}")
    print()
    motion = " | motion clip as one camera: leaked / 1000 face-frames, hidden whole" if args.motion else ""
    print("| source | cameras | output fps / camera | detections / s / camera (whole) "
          "| dropped (detect / anonymize / encode) | fail-closed frames | latency p50 / p95 ms | CPU % (of one core) "
          f"| peak RSS MB{motion} |")
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if args.motion else ""))
    for size in args.sizes:
        for cameras in args.cameras:
            out = subprocess.run(
                [sys.executable, __file__, "--one", size, str(cameras), "--seconds", str(args.seconds),
                 "--warmup", str(args.warmup), "--heap", args.heap, "--clip", args.clip],
                capture_output=True, text=True, check=True,
            ).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            d = r["dropped"]
            print(f"| {size} | {cameras} | {r['output_fps']:.1f} | {r['detect_fps']:.1f} ({r['whole_fps']:.1f}) "
                  f"| {d['detect']} / {d['anonymize']} / {d['encode']} | {r['fail_closed']} "
                  f"| {r['latency_p50_ms']:.0f} / {r['latency_p95_ms']:.0f} | {r['cpu_percent']:.0f} "
                  f"| {r['peak_rss_mb']:.0f} |{motion_cell(settings, size, cameras) if args.motion else ''}", flush=True)
    print()
    print(f"command: {command}")


if __name__ == "__main__":
    main()
