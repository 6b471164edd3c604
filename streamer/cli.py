"""The ``streamer`` command: ``serve``, ``anonymize`` and ``detect``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from .config import ConfigError, Mode, Settings, Shape, load_settings
from .detectors import create_detector
from .images import EXTENSIONS, ImageError
from .stills import anonymize_image, detect_image

log = logging.getLogger("streamer")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    return args.run(args, settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer", description="Face anonymization on the CPU, offline.")
    parser.add_argument("--config", metavar="FILE", help="YAML settings (default: configs/default.yaml)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="YAML settings")
    serve.add_argument("--host", help="address to listen on (default: server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    serve.set_defaults(run=_serve)

    anonymize = commands.add_parser("anonymize", help="anonymize image files and folders")
    anonymize.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="image files or folders")
    anonymize.add_argument("-o", "--output", required=True, type=Path, metavar="OUT",
                           help="output folder, or output file when IN is one image")
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

    from .api import create_app

    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.server.log_level)
    return 0


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
    detector = create_detector(settings.detector)
    failed = 0
    try:
        for source, target in tqdm(jobs, unit="image", disable=len(jobs) < 2):
            try:
                result = anonymize_image(source.read_bytes(), detector, threshold, anonymizer, settings.image)
            except (OSError, ImageError) as exc:
                log.error("%s: skipped: %s", source, exc)
                failed += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(result.data)
            log.debug("%s -> %s: %d faces", source, target, len(result.faces))
    finally:
        detector.close()
    log.info("anonymized %d of %d images into %s", len(jobs) - failed, len(jobs), args.output)
    return 1 if failed else 0


def _plan(inputs: list[Path], output: Path) -> list[tuple[Path, Path]]:
    """(source, target) pairs: folders are walked and mirrored below ``output``."""
    if len(inputs) == 1 and inputs[0].is_file() and output.suffix.lower() in EXTENSIONS:
        return [(inputs[0], output)]
    jobs = []
    for item in inputs:
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
            jobs += [(p, output / item.name / p.relative_to(item)) for p in files]
        elif item.is_file():
            jobs.append((item, output / item.name))
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
