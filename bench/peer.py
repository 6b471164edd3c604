"""Peer benchmark: our video-file CLI against deface 1.5.0 (https://github.com/ORB-HD/deface) on the same
clips in the same run.

Usage: ``python bench/peer.py [--clips motion PATH ...] [--runs 1] [--onnxruntime] [--no-score]
[--keep] [--markdown]``.

deface is no dependency of the product: this script makes its own venv for it once, under
``.cache/deface-venv`` (``python3.11 -m venv``, then ``pip install deface==1.5.0``; pip resolves
imageio, imageio-ffmpeg, scikit-image, tqdm and opencv-python). A plain install has no onnx or
onnxruntime, so deface's ``--backend auto`` runs its CenterFace model on OpenCV's DNN module; with
``--onnxruntime`` the venv is ``.cache/deface-venv-onnxrt`` and also holds ``onnx onnxruntime``
(deface's README: "Hardware acceleration"), which ``auto`` then prefers. The backend deface used is
printed (what ``auto`` resolves to in that venv, and the provider deface names when it is onnxrt:
with onnxruntime 1.32 that is AzureExecutionProvider, listed first, which hands every node of the
model on to CPUExecutionProvider). ``--onnxruntime`` was only tried on the 14-frame clip.

Each clip (default: the motion clip of ``bench/motion_clip.py``, ``ClipSpec(1, 20.0, 6)``, 1280x720,
630 frames, and the three clips of ``../shared/data/video``) is anonymized by both tools with their
defaults, one after the other, ``--runs`` times each:

- deface: ``.cache/deface-venv/bin/deface CLIP -o OUT.mp4`` (CenterFace at the frame's own size,
  threshold 0.2, blur in an ellipse inscribed in the box grown by 0.3 of its size on every side,
  i.e. 1.6x (``--mask-scale 1.3``), libx264 through imageio-ffmpeg, audio dropped);
- streamer: ``python -m streamer anonymize CLIP -o OUT.mp4`` (the Python running this script,
  the working directory this checkout, so the ``streamer`` package measured is this checkout's;
  video files run ``pipeline.detector``, the realtime profile: CenterFace in int8 at about 0.5 MP
  plus a coarse pass at 0.13 MP, threshold 0.2, boxes following their faces; blur in the box scaled
  by ``anonymizer.padding`` around its centre; audio dropped).

Per tool and clip: the median over the runs of the wall time and of the CPU time of the tool and
its children (``getrusage(RUSAGE_CHILDREN)`` deltas, so ffmpeg helpers count too), the output's
frame count (video packets, next to the clip's), frames per second (the clip's frames over the
median wall time: start-up and model loading are in it) and "speed vs deface", deface's median
time over the tool's. "others CPU %" is what the rest of the machine used meanwhile, in % of one
core (``/proc/stat``, this script left out): the machine may be shared, and rows are only
comparable when this is alike.

Leaks (the motion clip, unless ``--no-score``): one more run of each tool, made to paint what it
hides in magenta, scored exactly as ``bench/motion.py`` scores its ``files`` path
(``motion.score_file``: output frame i must show source frame i, which its frame-number bands
check; a face 32 px or taller, motion.py's default, leaked in a frame when less than 80% of its
box is hidden there).

- streamer: ``motion.ENVIRONMENT`` (``anonymizer.mode`` fill, ``fill_color`` [255, 0, 255]) and
  ``--mode fill``, as ``motion.run_files`` runs it, at the default detector profile.
- deface cannot fill with a colour, but ``--replacewith img --replaceimg PNG`` pastes an image,
  resized to each face's (scaled, clipped) box, over the frame, alpha-blended when the PNG has an
  alpha channel. The PNG is a magenta ellipse inscribed in a transparent square, so the pixels
  painted are those of deface's default blur ellipse (``skimage.draw.ellipse`` inscribed in the same
  box), and ``motion.hidden_mask`` (magenta in the output, not in the source) finds them with no new
  thresholds. Detection is the same as in the timed run (only the drawing differs); these runs'
  times are printed but are not in the speed table. This is more faithful than ``--replacewith
  solid`` (black boxes): a black box is the whole rectangle, not the ellipse deface blurs by
  default, and black can't be told apart from dark hair or shadows in the source.

Whether deface keeps the clip's frames one to one: its output's frame count is compared with the
clip's for every clip, and on the motion clip the scoring reads every output frame's number. An
output whose size is not the clip's is noted too: imageio-ffmpeg, which writes deface's videos,
stretches a frame whose sides are not multiples of 16 (608x1080 becomes 608x1088).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu  # noqa: E402
from streamer.config import AnonymizerSettings  # noqa: E402
from motion import ENVIRONMENT, EXPOSED, Meter, Tally, children_cpu_s, git_commit, score_file  # noqa: E402
from motion_clip import ClipSpec, build  # noqa: E402

DEFACE = "deface==1.5.0"
CACHE = ROOT / ".cache"
VIDEO_DIR = ROOT.parent / "shared" / "data" / "video"
MOTION = "motion"  # --clips name of the motion clip
MOTION_SPEC = ClipSpec(1, 20.0, 6)
MIN_HEIGHT = 32.0  # smallest face scored, px (bench/motion.py's default)
MAGENTA = (255, 0, 255)
ELLIPSE_PX = 1024  # side of the replacement PNG; deface resizes it to each box
TOOLS = ("deface", "streamer")


class Failed(RuntimeError):
    """A tool could not be installed or failed on a clip."""


# --------------------------------------------------------------------------------------------
# deface's venv


def deface_venv(onnxruntime: bool) -> Path:
    """The venv holding deface (made and installed once); raises Failed with pip's last lines."""
    venv = CACHE / ("deface-venv-onnxrt" if onnxruntime else "deface-venv")
    packages = [DEFACE, *(["onnx", "onnxruntime"] if onnxruntime else [])]
    marker = venv / "installed.txt"
    if marker.exists() and marker.read_text().split() == packages:
        return venv
    print(f"installing {' '.join(packages)} into {venv} (once) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    base = shutil.which("python3.11") or sys.executable
    steps = [[base, "-m", "venv", str(venv)], [str(venv / "bin" / "python"), "-m", "pip", "install", *packages]]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise Failed(f"could not install deface: `{shlex.join(step)}` exited with {result.returncode}:\n{tail}")
    marker.write_text(" ".join(packages) + "\n")
    return venv


def deface_check(venv: Path) -> str:
    """Checks that ``deface --help`` works; returns the versions and the backend ``--backend auto``
    picks in this venv (deface's own test: onnxrt when onnx and onnxruntime both import)."""
    help_ = subprocess.run([str(venv / "bin" / "deface"), "--help"], capture_output=True, text=True)
    if help_.returncode != 0 or "--replacewith" not in help_.stdout:
        raise Failed(f"`{venv / 'bin' / 'deface'} --help` failed ({help_.returncode}):\n{help_.stderr[-2000:]}")
    probe = (
        "import importlib.metadata as m, cv2\n"
        "try:\n import onnx, onnxruntime\n b = 'onnxrt (onnxruntime ' + onnxruntime.__version__ + ')'\n"
        "except ImportError:\n b = 'opencv (cv2.dnn)'\n"
        "print(f\"deface {m.version('deface')}, --backend auto: {b}, opencv-python {cv2.__version__}, "
        "imageio-ffmpeg {m.version('imageio-ffmpeg')}\")"
    )
    result = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True)
    if result.returncode != 0:
        raise Failed(f"could not inspect deface's venv:\n{result.stderr[-2000:]}")
    return result.stdout.strip()


def ellipse_png(path: Path) -> Path:
    """A magenta ellipse inscribed in a transparent square, for ``--replacewith img``."""
    image = np.zeros((ELLIPSE_PX, ELLIPSE_PX, 4), np.uint8)
    half = ELLIPSE_PX // 2
    cv2.ellipse(image, (half, half), (half, half), 0, 0, 360, (*MAGENTA[::-1], 255), -1, cv2.LINE_AA)
    cv2.imwrite(str(path), image)  # BGRA
    return path


# --------------------------------------------------------------------------------------------
# Runs


@dataclass(slots=True)
class Run:
    seconds: float
    cpu_s: float
    others_cpu_s: float
    frames: int | None  # output frames; None when there is no output
    size: tuple[int, int] | None
    exit_code: int
    note: str = ""  # e.g. deface's "Running on ..." line


@dataclass(slots=True)
class Result:
    clip: str
    tool: str
    clip_frames: int
    clip_size: tuple[int, int]
    runs: list[Run] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.exit_code == 0 and r.frames for r in self.runs)

    def median(self, name: str) -> float:
        return statistics.median(getattr(r, name) for r in self.runs)


def video_info(path: Path) -> tuple[int, tuple[int, int]]:
    """Frame count (video packets with data, no decoding) and size of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        return sum(1 for packet in container.demux(stream) if packet.size), size


def _tail(log: Path, lines: int = 12) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def run_tool(command: list[str], env: dict[str, str], output: Path, log: Path) -> Run:
    """Runs one command to completion; its wall time, CPU (with its children) and output."""
    output.unlink(missing_ok=True)
    meter, before = Meter(), children_cpu_s()
    with log.open("wb") as sink:
        result = subprocess.run(command, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    usage = meter.done(children_cpu_s() - before)
    frames, size = video_info(output) if output.exists() and output.stat().st_size else (None, None)
    found = re.search(r"Running on (\w+)", log.read_text(errors="replace"))
    return Run(usage.seconds, usage.product_cpu_s, usage.others_cpu_s, frames, size, result.returncode,
               found.group(0) if found else "")


def commands(tool: str, clip: Path, output: Path, venv: Path, extra: list[str]) -> list[str]:
    if tool == "deface":
        return [str(venv / "bin" / "deface"), str(clip), "-o", str(output), *extra]
    return [sys.executable, "-m", "streamer", "anonymize", str(clip), "-o", str(output), *extra]


def describe(env: dict[str, str], command: list[str]) -> str:
    return " ".join([*(f"{key}={shlex.quote(value)}" for key, value in env.items()), shlex.join(command)])


# --------------------------------------------------------------------------------------------
# Report


def print_table(header: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in rows:
            print("| " + " | ".join(line) + " |")
        return
    table = [header, *rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip())


SPEED_COLUMNS = ["clip", "tool", "frames out (clip)", "s", "CPU s", "CPU %", "fps", "speed vs deface", "others CPU %"]


def speed_row(result: Result, deface_s: float | None) -> list[str]:
    head = [result.clip, result.tool]
    if not result.ok:
        codes = ", ".join(str(r.exit_code) for r in result.runs)
        return head + [f"failed (exit {codes})"] + [""] * (len(SPEED_COLUMNS) - 3)
    seconds, cpu_s = result.median("seconds"), result.median("cpu_s")
    frames = sorted({r.frames for r in result.runs})
    sizes = {r.size for r in result.runs} - {result.clip_size}
    out = "/".join(map(str, frames)) + f" ({result.clip_frames})"
    if sizes:
        out += " at " + ", ".join(f"{w}x{h}" for w, h in sizes)
    speed = f"{deface_s / seconds:.2f}x" if deface_s else "-"
    return head + [out, f"{seconds:.1f}", f"{cpu_s:.1f}", f"{100 * cpu_s / seconds:.0f}",
                   f"{result.clip_frames / seconds:.2f}", speed, f"{100 * result.median('others_cpu_s') / seconds:.0f}"]


LEAK_COLUMNS = ["tool", "hides", "frames scored (out, clip)", "face-frames", f"leaked (< {EXPOSED:.0%} hidden)",
                "leaked / 1000", "tracks leaked (of)", "longest leak", "picture hidden", "run s"]


def leak_row(tool: str, hides: str, tally: Tally | None, run: Run, clip_frames: int) -> list[str]:
    if tally is None:
        return [tool, hides, f"failed (exit {run.exit_code})"] + [""] * (len(LEAK_COLUMNS) - 3)
    t = tally
    unmatched = f", {t.band_errors} unmatched" if t.band_errors else ""
    return [
        tool, hides, f"{t.frames} ({run.frames}, {clip_frames}){unmatched}", str(t.face_frames),
        f"{t.leaked} ({t.exposed})", f"{1000 * t.leaked / t.face_frames:.1f}" if t.face_frames else "-",
        f"{len(t.leaky_tracks)} ({len(t.tracks)})", str(t.longest),
        f"{100 * t.hidden_share_sum / t.frames:.1f}%" if t.frames else "-", f"{run.seconds:.0f}",
    ]


# --------------------------------------------------------------------------------------------


def default_clips() -> list[str]:
    return [MOTION, *(str(p) for p in sorted(VIDEO_DIR.glob("*.mp4")))]


@contextlib.contextmanager
def outputs(keep: bool) -> Iterator[Path]:
    """The folder for the runs' outputs and logs: kept under .cache/peer, or a temporary one."""
    if not keep:
        with tempfile.TemporaryDirectory(prefix="peer-") as scratch:
            yield Path(scratch)
        return
    folder = CACHE / "peer" / datetime.now().strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True)
    yield folder


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", default=default_clips(),
                        help=f"video files, or '{MOTION}' for bench/motion_clip.py's clip (default: {MOTION} "
                             f"and every .mp4 in {VIDEO_DIR})")
    parser.add_argument("--runs", type=int, default=1, help="timed runs per tool and clip; medians are reported")
    parser.add_argument("--onnxruntime", action="store_true",
                        help="give deface onnx and onnxruntime (its own venv .cache/deface-venv-onnxrt)")
    parser.add_argument("--no-score", action="store_true", help="skip the leak runs on the motion clip")
    parser.add_argument("--keep", action="store_true", help=f"keep outputs and logs under {CACHE / 'peer'}")
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    command = shlex.join([os.path.relpath(sys.executable), os.path.relpath(sys.argv[0]), *argv])
    print(f"command: {command}")
    print(f"date: {datetime.now().astimezone().isoformat(timespec='seconds')}; commit: {git_commit()}")
    print(f"machine: {cpu()}")
    try:
        venv = deface_venv(args.onnxruntime)
        deface_info = deface_check(venv)
    except Failed as exc:
        sys.exit(f"error: {exc}")
    print(f"peer: {deface_info} ({venv})")

    clips: list[tuple[str, Path]] = []
    motion_clip = None
    for name in args.clips:
        if name == MOTION:
            motion_clip = build(MOTION_SPEC)
            clips.append((MOTION, motion_clip.path))
        elif Path(name).is_file():
            clips.append((Path(name).name, Path(name).resolve()))  # the tools run in ROOT
        else:
            parser.error(f"no such clip: {name}")

    results: list[Result] = []
    leak_rows: list[list[str]] = []
    notes: list[str] = []
    with outputs(args.keep) as workdir:
        for index, (name, path) in enumerate(clips):
            clip_frames, clip_size = video_info(path)
            print(f"\nclip {name}: {path} ({clip_frames} frames, {clip_size[0]}x{clip_size[1]})", flush=True)
            for tool in TOOLS:
                result = Result(name, tool, clip_frames, clip_size)
                for run in range(args.runs):
                    stem = f"{index}-{tool}-{run}"
                    output, log = workdir / f"{stem}.mp4", workdir / f"{stem}.log"
                    argv_ = commands(tool, path, output, venv, [])
                    if run == 0:
                        print(f"  {tool}: {describe({}, argv_)}", flush=True)
                    done = run_tool(argv_, {}, output, log)
                    result.runs.append(done)
                    print(f"    run {run + 1}: {done.seconds:.1f} s, CPU {done.cpu_s:.1f} s, exit {done.exit_code}, "
                          f"{done.frames} frames out{', ' + done.note if done.note else ''}", flush=True)
                    if done.exit_code != 0 or not done.frames:
                        print(f"    FAILED; the end of its log:\n{_tail(log)}", flush=True)
                        break
                results.append(result)
                frames = {r.frames for r in result.runs if r.frames}
                if tool == "deface" and frames and frames != {clip_frames}:
                    notes.append(f"deface wrote {'/'.join(map(str, sorted(frames)))} frames for {name}'s "
                                 f"{clip_frames}: it does not keep the frames one to one there")
                for size in sorted({r.size for r in result.runs if r.size} - {clip_size}):
                    notes.append(f"{tool} wrote {name} at {size[0]}x{size[1]}, not {clip_size[0]}x{clip_size[1]}")
            if name == MOTION and not args.no_score:
                assert motion_clip is not None
                leak_rows += score_motion(motion_clip, venv, workdir)

    print()
    rows = []
    for result in results:
        deface = next((r for r in results if r.clip == result.clip and r.tool == "deface"), None)
        deface_s = deface.median("seconds") if deface is not None and deface.ok else None
        rows.append(speed_row(result, deface_s))
    print(f"Speed, default settings of both, median of {args.runs} run(s):")
    print_table(SPEED_COLUMNS, rows, args.markdown)
    if leak_rows:
        print()
        print(f"Leaks on the motion clip (faces >= {MIN_HEIGHT:g} px, bench/motion.py's scoring):")
        print_table(LEAK_COLUMNS, leak_rows, args.markdown)
    for note in notes:
        print(f"note: {note}")
    print()
    print(f"machine: {cpu()}; peer: {deface_info}")
    print(f"command: {command}")
    if args.keep:
        print(f"outputs and logs: {workdir}")


def score_motion(clip, venv: Path, workdir: Path) -> list[list[str]]:
    """One magenta run of each tool on the motion clip, scored; returns the leak table's rows."""
    png = ellipse_png(workdir / "magenta-ellipse.png")
    runs = {
        "deface": ({}, ["--replacewith", "img", "--replaceimg", str(png)],
                   "magenta ellipse in the 1.6x box (its blur's shape)"),
        "streamer": (ENVIRONMENT, ["--mode", "fill"],
                     f"magenta fill of the {AnonymizerSettings().padding:g}x box (its blur's shape)"),
    }
    rows = []
    print("  leak runs:", flush=True)
    for tool, (env, extra, hides) in runs.items():
        output, log = workdir / f"leak-{tool}.mp4", workdir / f"leak-{tool}.log"
        argv_ = commands(tool, clip.path, output, venv, extra)
        print(f"  {tool}: {describe(env, argv_)}", flush=True)
        done = run_tool(argv_, env, output, log)
        tally = None
        if done.exit_code == 0 and done.frames:
            tally = score_file(clip, output, MIN_HEIGHT)
        else:
            print(f"    FAILED (exit {done.exit_code}); the end of its log:\n{_tail(log)}", flush=True)
        print(f"    {done.seconds:.1f} s, CPU {done.cpu_s:.1f} s, {done.frames} frames out"
              f"{'; ' + str(tally.band_errors) + ' frames unmatched' if tally else ''}", flush=True)
        rows.append(leak_row(tool, hides, tally, done, clip.frames))
    return rows


if __name__ == "__main__":
    main()
