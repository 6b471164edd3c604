"""Leak metric for live video: output frames in which a face the accurate detector sees is not hidden.

Usage: ``python bench/leak.py [--clips NAME[:LOOPS] ...] [--profile NAME] [--threshold T]
[--min-height 32] [--ref-threshold 0.5]``.

For each clip (by default the three of ``shared/data/video``, plus the single-face one looped
three times as a longer stream):

1. Reference: the accurate profile runs offline on every frame at full resolution or more (its
   upscale factor, capped so that the network sees at most 2.5 MP, but never below 1). Faces scoring
   at least ``--ref-threshold`` are the reference; they are linked from frame to frame (IoU >= 0.3)
   into face tracks. The reference is cached under ``.cache/leak``.
2. Live: ``CameraPipeline`` plays the clip as a camera (looped, paced in real time) with the live
   detector (``pipeline.detector``, or ``--profile``) for the clip's length times LOOPS. Every
   output frame carries its source frame number, so it is matched to the reference frame
   (modulo the clip's length); the regions the anonymizer hid in it are recorded.
3. A reference face at least ``--min-height`` px tall is leaked in an output frame when less than 80%
   of its box lies in the hidden regions (padding and shape as configured; a frame hidden whole
   while detection is stale hides everything).

Printed per clip: output frames, leaked frames per 1000, face tracks and how many leaked at least
once, and the longest run of leaked frames of one track.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the clip folder of the tests
sys.path.insert(0, str(ROOT / "bench"))

from accuracy import PRIVACY_COVER, hidden_share  # noqa: E402
from clips import MEETING, PEDESTRIANS, SINGLE_FACE, source_clip  # noqa: E402

from machine import cpu  # noqa: E402
from streamer.config import CameraSettings, DetectorSettings, LiveDetectorSettings, load_settings  # noqa: E402
from streamer.faces.anonymizer import coverage_mask  # noqa: E402
from streamer.faces.detection import Face, iou  # noqa: E402
from streamer.faces.detectors import create_detector  # noqa: E402
from streamer.live.pipeline import CameraPipeline  # noqa: E402
from streamer.live.scheduler import DetectionScheduler  # noqa: E402

CACHE = ROOT / ".cache" / "leak"
REF_PROFILE = "accurate"
TRACK_IOU = 0.3  # reference faces in consecutive frames overlapping this much are one track
DEFAULT_CLIPS = [(SINGLE_FACE, 1), (MEETING, 10), (PEDESTRIANS, 1), (SINGLE_FACE, 3)]

Box = tuple[float, float, float, float]


@dataclass(slots=True)
class Reference:
    """Faces per frame of one clip, and the track each face belongs to."""

    size: tuple[int, int]  # width, height
    fps: float
    faces: list[list[Box]]
    tracks: list[list[int]]  # per frame, the track id of each face
    settings: str


def reference_settings(width: int, height: int) -> DetectorSettings:
    """The accurate profile, never resizing a frame below its own size."""
    accurate = DetectorSettings(profile=REF_PROFILE)
    scale = max(1.0, min(accurate.scale, math.sqrt(accurate.max_pixels / (width * height))))
    return DetectorSettings(profile=REF_PROFILE, scale=scale, max_pixels=0)


def decode(path: Path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 30)
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24"), fps


def reference(path: Path, threshold: float) -> Reference:
    """Run (or read from the cache) the reference detector on every frame of ``path``."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{REF_PROFILE}|v1".encode()).hexdigest()[:12]
    cached = CACHE / f"{path.stem}-{key}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
    else:
        detector = settings = None
        frames, fps, size = [], 30.0, (0, 0)
        try:
            for pixels, fps in decode(path):
                if detector is None:
                    size = (pixels.shape[1], pixels.shape[0])
                    settings = reference_settings(*size)
                    detector = create_detector(settings)
                frames.append([[*face.box, face.score] for face in detector.detect(pixels, 0.1)])
        finally:
            if detector is not None:
                detector.close()
        data = {"size": size, "fps": fps, "frames": frames,
                "settings": f"{settings.backend} {'int8' if settings.int8 else 'float'} x{settings.scale:.2f}"}
        CACHE.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(data))
    faces = [[tuple(face[:4]) for face in frame if face[4] >= threshold] for frame in data["frames"]]
    return Reference(tuple(data["size"]), data["fps"], faces, link_tracks(faces), data["settings"])


def link_tracks(faces: list[list[Box]]) -> list[list[int]]:
    """Greedy frame-to-frame linking: each face joins the best-overlapping track of the previous frame."""
    tracks: list[list[int]] = []
    previous: list[tuple[Box, int]] = []
    next_id = 0
    for boxes in faces:
        ids, free = [], list(previous)
        for box in boxes:
            best = max(free, key=lambda item: iou(item[0], box), default=None)
            if best is not None and iou(best[0], box) >= TRACK_IOU:
                free.remove(best)
                ids.append(best[1])
            else:
                ids.append(next_id)
                next_id += 1
        tracks.append(ids)
        previous = list(zip(boxes, ids))
    return tracks


@dataclass(slots=True)
class LiveRun:
    """What the pipeline hid in each output frame: None for a frame hidden whole."""

    hidden: dict[int, list[Face] | None] = field(default_factory=dict)  # source index -> faces hidden
    published: list[int] = field(default_factory=list)  # source indices of output frames, in order
    status: dict = field(default_factory=dict)
    seconds: float = 0.0


def run_live(path: Path, seconds: float, detector: DetectorSettings) -> LiveRun:
    """Play ``path`` through a camera pipeline for ``seconds`` and record what every output frame hid."""
    settings = load_settings()
    pipe = CameraPipeline(
        CameraSettings(name="leak", source=str(path), loop=True, realtime=True),
        settings.pipeline,
        settings.anonymizer,
        DetectionScheduler(partial(create_detector, detector), detector.threshold),
    )
    run = LiveRun(seconds=seconds)
    last = threading.local()
    faces_at, anonymize, publish = pipe._tracker.faces_at, pipe._anonymize, pipe.hub.publish

    def recording_faces_at(captured: float):
        last.faces = faces_at(captured)
        return last.faces

    def recording_anonymize(frame) -> None:
        anonymize(frame)
        run.hidden[frame.index] = last.faces

    def recording_publish(*args, **kwargs):
        published = publish(*args, **kwargs)
        index = kwargs.get("index", args[-1] if args else None)  # the source frame number comes last
        run.published.append(getattr(published, "index", index))
        return published

    pipe._tracker.faces_at = recording_faces_at
    pipe._anonymize = recording_anonymize
    pipe.hub.publish = recording_publish
    pipe.start()
    try:
        time.sleep(seconds)
    finally:
        run.status = pipe.status()
        pipe.stop()
    return run


@dataclass(frozen=True, slots=True)
class ClipResult:
    clip: str
    loops: int
    reference: str
    output_frames: int
    fail_closed: int
    detect_fps: float
    output_fps: float
    face_frames: int  # (output frame, reference face >= min height) pairs
    leaked_frames: int  # output frames with at least one leaked face
    leaked_faces: int  # (frame, face) pairs leaked
    tracks: int
    leaky_tracks: int
    longest_leak: int  # most consecutive output frames one track leaked in

    @property
    def per_1000(self) -> float:
        return 1000 * self.leaked_frames / self.output_frames if self.output_frames else float("nan")


def score(name: str, loops: int, ref: Reference, run: LiveRun, min_height: float) -> ClipResult:
    anonymizer = load_settings().anonymizer
    width, height = ref.size
    n = len(ref.faces)
    leaked_frames = leaked_faces = face_frames = 0
    tracks_seen: set[int] = set()
    leaky: set[int] = set()
    streak: dict[int, int] = {}
    longest = 0
    for index in run.published:
        hidden = run.hidden.get(index, None)
        boxes, ids = ref.faces[index % n], ref.tracks[index % n]
        # a track id is per clip loop: a face seen again in the next loop is the same person
        big = [(box, track) for box, track in zip(boxes, ids) if box[3] >= min_height]
        if not big:
            streak.clear()
            continue
        mask = None if hidden is None else coverage_mask(hidden, width, height, anonymizer)
        leaked_here = False
        current = set()
        for box, track in big:
            face_frames += 1
            tracks_seen.add(track)
            current.add(track)
            if mask is not None and hidden_share(mask, box) < PRIVACY_COVER:
                leaked_faces += 1
                leaked_here = True
                leaky.add(track)
                streak[track] = streak.get(track, 0) + 1
                longest = max(longest, streak[track])
            else:
                streak[track] = 0
        for track in list(streak):
            if track not in current:
                del streak[track]
        leaked_frames += leaked_here
    return ClipResult(
        clip=name, loops=loops, reference=ref.settings, output_frames=len(run.published),
        fail_closed=run.status.get("fail_closed_frames", 0),
        detect_fps=run.status["frames"]["detect"] / run.seconds,
        output_fps=run.status["fps"]["output"],
        face_frames=face_frames, leaked_frames=leaked_frames, leaked_faces=leaked_faces,
        tracks=len(tracks_seen), leaky_tracks=len(leaky), longest_leak=longest,
    )


def print_results(results: list[ClipResult], min_height: float) -> None:
    print(f"| clip (loops) | output frames | frames hidden whole | detections / s | faces >= {min_height:g} px "
          f"(face-frames) | leaked frames | leaked / 1000 frames | face tracks | tracks that leaked "
          f"| longest leak (frames) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.clip} (x{r.loops}) | {r.output_frames} | {r.fail_closed} | {r.detect_fps:.1f} | {r.face_frames} "
              f"| {r.leaked_frames} | {r.per_1000:.1f} | {r.tracks} | {r.leaky_tracks} | {r.longest_leak} |")
    total_frames = sum(r.output_frames for r in results)
    total_leaked = sum(r.leaked_frames for r in results)
    print(f"| all | {total_frames} | {sum(r.fail_closed for r in results)} | | "
          f"{sum(r.face_frames for r in results)} | {total_leaked} | "
          f"{1000 * total_leaked / max(1, total_frames):.1f} | {sum(r.tracks for r in results)} "
          f"| {sum(r.leaky_tracks for r in results)} | {max((r.longest_leak for r in results), default=0)} |")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", metavar="NAME[:LOOPS]",
                        help="clips of shared/data/video (or paths), each with how often it plays; default: "
                        + " ".join(f"{name}:{loops}" for name, loops in DEFAULT_CLIPS))
    parser.add_argument("--profile", help="live detector profile; default: pipeline.detector as configured")
    parser.add_argument("--threshold", type=float, help="live detector threshold; default: the profile's")
    parser.add_argument("--min-height", type=float, default=32.0, help="smallest reference face counted, px")
    parser.add_argument("--ref-threshold", type=float, default=0.5, help="reference faces score at least this")
    args = parser.parse_args(argv)
    clips = DEFAULT_CLIPS
    if args.clips:
        clips = [(c.rsplit(":", 1)[0], int(c.rsplit(":", 1)[1])) if ":" in c else (c, 1) for c in args.clips]
    configured = load_settings().pipeline.detector
    live = configured if args.profile is None else LiveDetectorSettings(
        profile=args.profile, threads=configured.threads, model_dir=configured.model_dir)
    if args.threshold is not None:
        live = LiveDetectorSettings.model_validate(live.model_dump() | {"threshold": args.threshold})
    command = shlex.join(["python", "bench/leak.py", *argv])
    print(f"command: {command}")
    print(f"machine: {cpu()}")
    print(f"date: {datetime.now().astimezone().isoformat(timespec='seconds')}; live detector: {live.profile} "
          f"({live.backend}{' int8' if live.int8 else ''}, scale {live.scale:g}, max_pixels {live.max_pixels}, "
          f"threshold {live.threshold:g}); reference: {REF_PROFILE} profile at >= native size, score >= "
          f"{args.ref_threshold:g}")
    results = []
    for name, loops in clips:
        path = source_clip(name)
        ref = reference(path, args.ref_threshold)
        seconds = loops * len(ref.faces) / ref.fps + 1.0  # +1 s: the first detection
        run = run_live(path, seconds, live)
        result = score(Path(name).name, loops, ref, run, args.min_height)
        print(f"  {result.clip} x{loops}: reference {ref.settings}, {len(ref.faces)} frames; "
              f"{result.output_frames} out, {result.leaked_frames} leaked", flush=True)
        results.append(result)
    print()
    print_results(results, args.min_height)
    print()
    print(f"command: {command}")


if __name__ == "__main__":
    main()
