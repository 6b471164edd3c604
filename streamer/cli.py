"""The ``streamer`` command: ``serve``, ``anonymize`` and ``detect``."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import math
import sys
from concurrent.futures import as_completed
from pathlib import Path
from typing import Callable, Iterator

from pydantic import ValidationError
from tqdm import tqdm

from .config import AnonymizerSettings, ConfigError, DetectorSettings, ImageSettings, Mode, Settings, Shape, load_settings, with_cameras
from .faces.detection import Detector
from .faces.detectors import create_detector
from .faces.zones import ZoneMasks
from .heap import keep_freed_buffers
from .http.audit import append_to, audit
from .redact import redact
from .stills.images import EXTENSIONS, ImageError
from .stills.job import anonymize_image, detect_image
from .stills.video import EXTENSIONS as VIDEO_EXTENSIONS
from .stills.video import VideoError, anonymize_video, frame_count, queue_size
from .stills.workers import Stop, WorkerPool, cpu_count
from .users import Role, User, Users, UsersError, UsersFile, hash_password, new_api_key, read_users, write_users
from .zones import ZonesFile

log = logging.getLogger("streamer")

MAX_REQUEST_HEAD = 64 * 1024  # bytes of request line and headers


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
    anonymize.add_argument("--zones", type=Path, metavar="FILE",
                           help="videos: hide the privacy zones of a zones file (pipeline.zones_file) in every frame")
    anonymize.add_argument("--zones-camera", metavar="NAME",
                           help="whose zones in --zones FILE (needed when it holds more than one camera)")
    anonymize.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="YAML settings")
    anonymize.add_argument("--mode", choices=[m.value for m in Mode])
    anonymize.add_argument("--shape", choices=[s.value for s in Shape])
    anonymize.add_argument("--padding", type=float)
    anonymize.add_argument("--threshold", type=float)
    anonymize.set_defaults(run=_anonymize)

    users = commands.add_parser("users", help="add users, API keys; list and remove them (the users file)")
    users.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="YAML settings")
    users.add_argument("--file", metavar="FILE", help="the users file (default: auth.users_file)")
    actions = users.add_subparsers(required=True, dest="action", metavar="ACTION")
    add = actions.add_parser("add", help="add a user, or set a user's password, role and cameras again")
    add.add_argument("name")
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.viewer.value)
    add.add_argument("--cameras", metavar="A,B", help='cameras a viewer may watch, comma-separated; "*" = every camera')
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    key = actions.add_parser("key", help="make a new API key for a user and print it (it is shown once)")
    key.add_argument("name")
    remove = actions.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    actions.add_parser("list", help="list the users")
    users.set_defaults(run=_users)

    detect = commands.add_parser("detect", help="list the faces in an image")
    detect.add_argument("image", type=Path)
    detect.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="YAML settings")
    detect.add_argument("--threshold", type=float)
    detect.add_argument("--json", action="store_true", help="print JSON as POST /v1/detect does")
    detect.set_defaults(run=_detect)
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from .http.security import is_loopback
    from .server import create_app

    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    try:
        if args.camera or args.no_cameras:
            settings = with_cameras(settings, [_camera_flag(flag) for flag in args.camera])
        settings = settings.model_copy(update={"server": settings.server.model_copy(update={"host": host})})
        users = Users(Path(settings.auth.users_file)) if settings.auth.users_file else None
    except (ConfigError, UsersError) as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    if not users:
        if not is_loopback(host):
            print(
                f"streamer: refusing to listen on {host} without users: anyone who reached the port would watch "
                "every camera. Add one (streamer users add NAME --role admin --file users.yaml) and set "
                "auth.users_file, or listen on 127.0.0.1.",
                file=sys.stderr,
            )
            return 2
        log.warning("no users (auth.users_file): anyone who can reach %s:%d watches every camera", host, port)
    if args.shard is not None:
        server = {**settings.server.model_dump(), "shard": args.shard}
        try:
            settings = Settings.model_validate({**settings.model_dump(), "server": server})
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
            print(f"streamer: --shard (server.shard): {problem}", file=sys.stderr)
            return 2
    try:
        app = create_app(settings)
    except ConfigError as exc:  # e.g. a zones file that cannot be read
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    tls = {"ssl_certfile": settings.server.tls_cert, "ssl_keyfile": settings.server.tls_key} if settings.server.tls_cert else {}
    uvicorn.run(
        app, host=host, port=port, log_level=settings.server.log_level,
        timeout_graceful_shutdown=settings.server.shutdown_grace_s, **tls,
        # uvicorn would believe X-Forwarded-For from any local client; auth.trusted_proxies decides instead
        proxy_headers=False,
        # h11 bounds a request's head (httptools took 20 MB of headers); a larger one gets 431
        http="h11", h11_max_incomplete_event_size=MAX_REQUEST_HEAD,
    )
    return 0


def _users(args: argparse.Namespace, settings: Settings) -> int:
    """``streamer users add|key|remove|list``: edit the users file (hashes only, never secrets)."""
    path = Path(args.file or settings.auth.users_file or "")
    if not str(path) or path == Path("."):
        print("streamer: which users file? Give --file FILE or set auth.users_file", file=sys.stderr)
        return 2
    try:
        content = read_users(path) if path.exists() else UsersFile()
        users = list(content.users)
        by_name = {user.name: user for user in users}
        if args.action == "list":
            for user in users:
                cameras = "every camera" if user.sees_every_camera else ", ".join(user.cameras) or "no cameras"
                print(f"{user.name}\t{user.role.value}\t{cameras}\t{len(user.api_keys)} API key(s)")
            return 0
        if args.action == "add":
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass(f"password for {args.name}: ")
            if len(password) < 8:
                print("streamer: a password needs at least 8 characters", file=sys.stderr)
                return 2
            cameras = tuple(c for c in args.cameras.split(",") if c) if args.cameras else ()
            previous = by_name.get(args.name)
            by_name[args.name] = User(
                name=args.name, role=Role(args.role), cameras=cameras, password=hash_password(password),
                api_keys=previous.api_keys if previous else (),
            )
        elif args.name not in by_name:
            print(f"streamer: no user {args.name!r} in {path}", file=sys.stderr)
            return 2
        elif args.action == "key":
            key, digest = new_api_key()
            user = by_name[args.name]
            by_name[args.name] = user.model_copy(update={"api_keys": (*user.api_keys, digest)})
            print(key)
        else:  # remove
            del by_name[args.name]
        write_users(path, content.model_copy(update={"users": tuple(by_name.values())}))
    except (UsersError, ValueError) as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    if settings.auth.audit_log:
        append_to(settings.auth.audit_log)
    audit("users_changed", action=args.action, user=args.name, file=str(path), by=getpass.getuser())
    return 0


def _camera_flag(flag: str) -> dict:
    name, sep, source = flag.partition("=")
    if not sep or not name or not source:
        raise ConfigError(f"--camera {redact(flag)!r} is not NAME=SOURCE")
    return {"name": name, "source": source}


def _anonymize(args: argparse.Namespace, settings: Settings) -> int:
    overrides = {k: getattr(args, k) for k in ("mode", "shape", "padding") if getattr(args, k) is not None}
    try:
        anonymizer = settings.anonymizer.model_validate({**settings.anonymizer.model_dump(), **overrides})
    except ValueError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    try:
        jobs = _plan(args.inputs, args.output)
        zones = _zones(args.zones, args.zones_camera) if args.zones else ZoneMasks()
    except ValueError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    images = [(source, target) for source, target in jobs if source.suffix.lower() in EXTENSIONS]
    videos = [(source, target) for source, target in jobs if source.suffix.lower() in VIDEO_EXTENSIONS]
    failed = 0
    # Images get the still-image detector, videos the live cameras' one (pipeline.detector): per
    # frame it costs a tenth, and with the boxes carried from frame to frame it leaks fewer faces.
    # One thread and detector per core, as the server has. Every image may wait in its queue, and
    # a video keeps at most queue_size(workers) frames in it.
    if images:
        with _pool(settings.detector, len(images)) as pool:
            threshold = settings.detector.threshold if args.threshold is None else args.threshold
            failed += _anonymize_images(images, pool, settings.image, anonymizer, threshold)
    if videos:
        with _pool(settings.pipeline.detector, queue_size(cpu_count())) as pool:
            threshold = settings.pipeline.detector.threshold if args.threshold is None else args.threshold
            failed += _anonymize_videos(videos, pool, settings, anonymizer, threshold, args.keep_audio, zones)
    log.info("anonymized %d of %d files into %s", len(jobs) - failed, len(jobs), args.output)
    return 1 if failed else 0


@contextlib.contextmanager
def _pool(detector: DetectorSettings, queue_size: int) -> Iterator[WorkerPool]:
    pool = WorkerPool(detector, workers=0, queue_size=queue_size, max_wait_s=math.inf)
    try:
        yield pool
    finally:
        pool.shutdown()


def _zones(path: Path, camera: str | None) -> ZoneMasks:
    """The zones of ``camera`` (or of the only camera) in the zones file at ``path``."""
    every = ZonesFile(path).load() if path.exists() else None
    if not every:
        raise ValueError(f"--zones {path}: no zones file there, or no zones in it")
    if camera is None and len(every) > 1:
        raise ValueError(f"--zones {path} holds {', '.join(sorted(every))}: choose one with --zones-camera")
    name = camera or next(iter(every))
    if name not in every:
        raise ValueError(f"--zones {path} has no zones for camera {name!r}")
    return ZoneMasks(every[name])


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
    threshold: float, keep_audio: bool, zones: ZoneMasks,
) -> int:
    """Anonymize (source, target) video files one after another, each frame's detection on
    ``pool``; returns how many failed."""
    failed = 0
    for source, target in videos:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tqdm(total=frame_count(source) or None, unit="frame", desc=source.name) as bar:
                report = anonymize_video(
                    source, target, pool, threshold, anonymizer, settings.pipeline.file_hold_s, settings.pipeline.follow_s,
                    follow_back_s=settings.pipeline.file_follow_back_s, fail_mode=settings.pipeline.fail_mode,
                    keep_audio=keep_audio, on_frame=bar.update, zones=zones,
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
