"""The ``streamer`` command: ``serve``, ``anonymize`` and ``detect``."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from concurrent.futures import as_completed
from pathlib import Path
from typing import Callable

from pydantic import ValidationError
from tqdm import tqdm

from .config import AnonymizerSettings, ConfigError, ImageSettings, Mode, Settings, Shape, load_settings
from .faces.detection import Detector
from .faces.detectors import create_detector
from .heap import keep_freed_buffers
from .stills.images import EXTENSIONS, ImageError
from .stills.job import anonymize_image, detect_image
from .stills.video import EXTENSIONS as VIDEO_EXTENSIONS
from .stills.video import LOOKAHEAD_FRAMES, VideoError, anonymize_video, frame_count
from .stills.workers import Stop, WorkerPool, cpu_count

log = logging.getLogger("streamer")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keep_freed_buffers()
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    return args.run(args, settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer", description="Face anonymization on the CPU, offline.")
    parser.add_argument("--config", metavar="FILE", help="YAML settings (default: $STREAMER_CONFIG, else the shipped streamer/default.yaml)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="YAML settings")
    serve.add_argument("--host", help="address to listen on (default: server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    serve.add_argument("--camera", action="append", metavar="NAME=SOURCE", default=[],
                       help="serve this camera instead of the configured ones (repeatable); SOURCE is "
                       "an rtsp:// URL, /dev/videoN or a video file")
    serve.add_argument("--no-cameras", action="store_true", help="serve still images only")
    serve.add_argument("--shard", metavar="I/N", help="run only the cameras that hash to shard I of N, or "
                       "ordinal/N for I from the host name's -<number> (default: server.shard)")
    serve.set_defaults(run=_serve)

    anonymize = commands.add_parser("anonymize", help="anonymize images, folders of images and video files")
    anonymize.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="image or video files, or folders")
    anonymize.add_argument("-o", "--output", required=True, type=Path, metavar="OUT",
                           help="output folder, or output file when IN is one file")
    anonymize.add_argument("--keep-audio", action="store_true", help="videos: copy the audio (dropped by default)")
    anonymize.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="YAML settings")
    anonymize.add_argument("--mode", choices=[m.value for m in Mode])
    anonymize.add_argument("--shape", choices=[s.value for s in Shape])
    anonymize.add_argument("--padding", type=float)
    anonymize.add_argument("--threshold", type=float)
    anonymize.set_defaults(run=_anonymize)

    detect = commands.add_parser("detect", help="list the faces in an image")
    detect.add_argument("image", type=Path)
    detect.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="YAML settings")
    detect.add_argument("--threshold", type=float)
    detect.add_argument("--json", action="store_true", help="print JSON as POST /v1/detect does")
    detect.set_defaults(run=_detect)
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from .server import create_app

    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    if args.camera or args.no_cameras:
        try:
            cameras = [_camera_flag(flag) for flag in args.camera]
            settings = Settings.model_validate({**settings.model_dump(), "cameras": cameras})
        except ValueError as exc:
            print(f"streamer: --camera: {exc}", file=sys.stderr)
            return 2
    if args.shard is not None:
        server = {**settings.server.model_dump(), "shard": args.shard}
        try:
            settings = Settings.model_validate({**settings.model_dump(), "server": server})
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
            print(f"streamer: --shard (server.shard): {problem}", file=sys.stderr)
            return 2
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.server.log_level)
    return 0


def _camera_flag(flag: str) -> dict:
    name, sep, source = flag.partition("=")
    if not sep or not name or not source:
        raise ValueError(f"{flag!r} is not NAME=SOURCE")
    return {"name": name, "source": source}


def _anonymize(args: argparse.Namespace, settings: Settings) -> int:
    overrides = {k: getattr(args, k) for k in ("mode", "shape", "padding") if getattr(args, k) is not None}
    try:
        anonymizer = settings.anonymizer.model_validate({**settings.anonymizer.model_dump(), **overrides})
    except ValueError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    threshold = settings.detector.threshold if args.threshold is None else args.threshold
    try:
        jobs = _plan(args.inputs, args.output)
    except ValueError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    images = [(source, target) for source, target in jobs if source.suffix.lower() in EXTENSIONS]
    videos = [(source, target) for source, target in jobs if source.suffix.lower() in VIDEO_EXTENSIONS]
    # One thread and detector per core, as the server has. Every image may wait in its queue, and
    # a video keeps 1 + LOOKAHEAD_FRAMES + 2 per worker frames in it.
    queue_size = len(images) + 1 + LOOKAHEAD_FRAMES + 2 * cpu_count()
    pool = WorkerPool(settings.detector, workers=0, queue_size=queue_size, max_wait_s=math.inf)
    try:
        failed = _anonymize_images(images, pool, settings.image, anonymizer, threshold) if images else 0
        failed += _anonymize_videos(videos, pool, settings, anonymizer, threshold, args.keep_audio) if videos else 0
    finally:
        pool.shutdown()
    log.info("anonymized %d of %d files into %s", len(jobs) - failed, len(jobs), args.output)
    return 1 if failed else 0


def _anonymize_images(
    images: list[tuple[Path, Path]], pool: WorkerPool, limits: ImageSettings, anonymizer: AnonymizerSettings,
    threshold: float,
) -> int:
    """Anonymize (source, target) image files on every worker of ``pool`` at once (each image is
    read inside its job, so one per worker is in memory); returns how many failed."""

    def job(source: Path, target: Path) -> Callable[[Detector, Stop], None]:
        def run(detector: Detector, stop: Stop) -> None:
            result = anonymize_image(source.read_bytes(), detector, threshold, anonymizer, limits)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(result.data)
        return run

    runs = {pool.submit(job(source, target)): source for source, target in images}
    failed = 0
    for done in tqdm(as_completed(runs), total=len(runs), unit="image", disable=len(runs) < 2):
        try:
            done.result()
        except (OSError, ImageError) as exc:
            log.error("%s: skipped: %s", runs[done], exc)
            failed += 1
    return failed


def _anonymize_videos(
    videos: list[tuple[Path, Path]], pool: WorkerPool, settings: Settings, anonymizer: AnonymizerSettings,
    threshold: float, keep_audio: bool,
) -> int:
    """Anonymize (source, target) video files one after another, each frame's detection on
    ``pool``; returns how many failed."""
    failed = 0
    for source, target in videos:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tqdm(total=frame_count(source) or None, unit="frame", desc=source.name) as bar:
                report = anonymize_video(
                    source, target, pool, threshold, anonymizer, settings.pipeline.hold_s,
                    fail_mode=settings.pipeline.fail_mode, keep_audio=keep_audio, on_frame=bar.update,
                )
        except (OSError, VideoError) as exc:
            log.error("%s: skipped: %s", source, exc)
            failed += 1
            continue
        log.info("%s -> %s: %d frames at %s fps", source, target, report.frames, report.fps)
        if report.hidden_whole:
            log.warning("%s: %d frames hidden whole: their detection failed", source, report.hidden_whole)
    return failed


def _plan(inputs: list[Path], output: Path) -> list[tuple[Path, Path]]:
    """(source, target) pairs: folders are walked for images and videos and mirrored below ``output``."""
    known = EXTENSIONS.keys() | VIDEO_EXTENSIONS
    if len(inputs) == 1 and inputs[0].is_file() and output.suffix.lower() in known:
        return [(inputs[0], output)]
    jobs = []
    for item in inputs:
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.suffix.lower() in known and p.is_file())
            jobs += [(p, output / item.name / p.relative_to(item)) for p in files]
        elif item.is_file() and item.suffix.lower() in known:
            jobs.append((item, output / item.name))
        elif item.is_file():
            raise ValueError(f"{item}: not an image or video file ({', '.join(sorted(known))})")
        else:
            raise ValueError(f"{item}: no such file or folder")
    for source, target in jobs:
        if target.resolve() == source.resolve():
            raise ValueError(f"{source}: the output would overwrite the input")
    return jobs


def _detect(args: argparse.Namespace, settings: Settings) -> int:
    threshold = settings.detector.threshold if args.threshold is None else args.threshold
    detector = create_detector(settings.detector)
    try:
        result = detect_image(args.image.read_bytes(), detector, threshold, settings.image)
    except (OSError, ImageError) as exc:
        print(f"streamer: {args.image}: {exc}", file=sys.stderr)
        return 1
    finally:
        detector.close()
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        print(f"{args.image}: {result.width}x{result.height}, {len(result.faces)} faces")
        for face in result.faces:
            x, y, w, h = face.box
            print(f"  x={x:.0f} y={y:.0f} w={w:.0f} h={h:.0f} score={face.score:.2f}")
    return 0
