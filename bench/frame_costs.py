"""What one live frame costs, stage by stage, at one size: CPU ms a frame on this thread.

    python bench/frame_costs.py [--size 1920x1080] [--frames 60]

Decoding the bench clip (``bench/pipeline.py``'s, at --size) with FFmpeg's frame threads and with
one thread (the live default), and converting it to RGB; hiding a frame whole (``hide_all``)
against a shrink over every pixel; and the live detector on the whole frame against a look around the
frame's faces (``faces/focus.py``). CPU time counts every thread of the process (OpenCV's and
FFmpeg's helpers too), so a figure is what the machine pays.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import av
import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from clips import SINGLE_FACE, make_clip  # noqa: E402

from machine import cpu  # noqa: E402
from streamer.config import FailMode, load_settings  # noqa: E402
from streamer.faces.anonymizer import hide_all  # noqa: E402
from streamer.faces.detectors import create_detector  # noqa: E402
from streamer.faces.focus import detect_around  # noqa: E402


def cpu_ms(work: Callable[[], object], repeat: int) -> float:
    started = time.process_time()
    for _ in range(repeat):
        work()
    return (time.process_time() - started) / repeat * 1000


def decode_ms(clip: Path, frames: int, thread_type: str | None) -> float:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        if thread_type:
            stream.thread_type = thread_type
        else:
            stream.thread_count = 1
        started, count = time.process_time(), 0
        for _ in container.decode(stream):
            count += 1
            if count == frames:
                break
        return (time.process_time() - started) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    clip = make_clip(SINGLE_FACE, ROOT / ".cache" / "bench-clips", seconds=10, width=width, height=height, fps=30)
    with av.open(str(clip)) as container:
        decoded = [frame for _, frame in zip(range(args.frames), container.decode(video=0))]
    rgb = decoded[0].to_ndarray(format="rgb24")
    settings = load_settings().pipeline.detector
    detector = create_detector(settings)
    faces = detector.detect(rgb, settings.threshold)
    conversion = iter(range(10**9))

    rows = [
        ("decode, FFmpeg frame threads", decode_ms(clip, args.frames, "AUTO")),
        ("decode, one thread (live default)", decode_ms(clip, args.frames, None)),
        ("to RGB", cpu_ms(lambda: decoded[next(conversion) % len(decoded)].to_ndarray(format="rgb24"), args.frames)),
        ("hide whole, shrink over every pixel",
         cpu_ms(lambda: cv2.resize(rgb, (24, max(1, round(24 * height / width))), interpolation=cv2.INTER_AREA),
                args.frames)),
        ("hide whole, hide_all", cpu_ms(lambda: hide_all(rgb, FailMode.blur), args.frames)),
        (f"detect, whole frame ({settings.profile})", cpu_ms(lambda: detector.detect(rgb, settings.threshold), 10)),
        (f"detect, around the {len(faces)} face(s) found", cpu_ms(
            lambda: detect_around(detector, rgb, faces, settings.threshold), 10)),
    ]
    detector.close()
    command = shlex.join(["python", "bench/frame_costs.py", *sys.argv[1:]])
    print(f"command: {command}")
    print(f"machine: {cpu()}; clip: {clip.name}")
    print()
    print("| step | CPU ms a frame |")
    print("|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    main()
