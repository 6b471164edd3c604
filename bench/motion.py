"""Motion benchmark for privacy: faces that a moving, zooming, shaking camera lets slip through.

Usage: ``python bench/motion.py [--profiles fast accurate realtime] [--paths files live]
[--seconds 20] [--shots 6] [--seed 1] [--min-height 32] [--beside N WxH] [--keep] [--markdown]
[--kinds]``.

The clip (``bench/motion_clip.py``): faces-dev photos filmed by a virtual camera that pans, zooms
(faces from about 30 to 230 px tall) and shakes, with hard cuts between shots, 1280x720 at 30 fps
in H.264. Every labelled face's box is known in every frame, and every frame carries its number
in two black-and-white bands above and below the picture. It is made once per --seed/--seconds/
--shots and cached under ``.cache/motion``.

Two ways through the product, each with every detector profile asked for:

- ``files``: ``streamer anonymize CLIP -o OUT.mp4 --mode fill`` (``STREAMER_PIPELINE__DETECTOR__PROFILE``);
  OUT's frames are matched to the clip's by position, and their bands must agree.
- ``live``: ``streamer serve`` with one camera playing the clip once in real time (``loop:
  false``, ``STREAMER_PIPELINE__DETECTOR__PROFILE``); this script is the one MJPEG viewer of
  ``/api/cameras/motion/stream.mjpeg``. A viewer gets the newest frame whenever it is ready for
  one, so frames may be skipped: each JPEG is matched to its source frame by the number in its
  bands. The JPEGs are kept in memory while the clip plays and scored afterwards, so that scoring
  takes no CPU from the server. The server's still-image pool, unused here, gets one worker with
  the fast detector, so that it starts quickly and stays out of the camera's way. The clip's
  one-second lead-in covers the moments between the camera starting and this viewer connecting.
  With ``--beside N WxH`` the server has N more cameras, each looping the single-face clip of
  ``bench/pipeline.py`` at WxH and 30 fps with no viewer, which share the detector with the clip's.

What is hidden: faces are filled with magenta (``anonymizer.fill_color`` [255, 0, 255]), a colour
that H.264 and JPEG (4:2:0) keep far from any colour of the photos. A pixel counts as hidden when
it is fill-coloured in the output (R and B above 170, G below 100, R and B within 70 of each
other) and was not in the source (nearby fill-coloured source pixels, dilated 2 px for codec
spread, never count; there are none in the default clip). Thresholds this loose absorb codec
noise, and the box edges they blur are outside the faces: the fill is the face box padded 1.3x.
A frame hidden whole (``pipeline.fail_mode``: blurred to a few cells, or black) has no readable
bands; it is recognised by having no sharp edges at all, counts as covering everything, and is
attributed to the frame after the previous one received (only the face count depends on this).

A face is counted in a frame when its box, clipped to the picture, is at least --min-height px
tall; it leaked there when less than 80% of that box is hidden (as in ``bench/accuracy.py``); how
many of those were less than half hidden is given too (a detector box shorter than the labelled
face, e.g. one that leaves out a face mask, leaks by the first count but hides the eyes). A
track is one labelled face through one shot; the longest leak is the most consecutive scored
frames in which one track leaked. The share of the picture hidden leaves out the bands.

With ``--kinds``, each run's leaked face-frames are also sorted by why they leaked: the profile's
detector alone is run on every frame of the clip (once; cached beside it) and a leaked face counts
as never found, found only on later (or only on earlier) frames of its track, on both, or found on
that very frame with a box short of the labelled one.

Each row also gives the run's wall time and the CPU the product's process used and the rest of the
machine used meanwhile (this script left out), in % of one core: on a shared machine a live row
is only comparable with another whose "others" column is alike.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import resource
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import simplejpeg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from accuracy import PRIVACY_COVER, hidden_share  # noqa: E402
from machine import cpu  # noqa: E402
from motion_clip import (  # noqa: E402
    CACHE, DEFAULT_DATA, FPS, PICTURE_BOTTOM, PICTURE_TOP, Clip, ClipSpec, build, decode, read_number,
)

PROFILES = ("fast", "accurate", "realtime")
PATHS = ("files", "live")
CAMERA = "motion"
FILL_COLOR = (255, 0, 255)
EXPOSED = 0.5  # a leaked face less hidden than this is also counted apart
SHARP_STEP = 24  # grey-level step between neighbouring pixels that counts as an edge
WHOLE_MAX_EDGES = 1e-4  # a frame hidden whole has fewer edges than this share of its pixels
READY_TIMEOUT_S = 120.0
TICKS = os.sysconf("SC_CLK_TCK")
FLUSH_S = 1.5  # after the camera's file ended, its last frames reach the viewer within this
ENVIRONMENT = {  # both paths: fill faces with a colour the scoring can see
    "STREAMER_ANONYMIZER__MODE": "fill",
    "STREAMER_ANONYMIZER__FILL_COLOR": json.dumps(list(FILL_COLOR)),
}


# --------------------------------------------------------------------------------------------
# What an output frame hides


def _fill_coloured(pixels: np.ndarray) -> np.ndarray:
    r, g, b = (pixels[..., i].astype(np.int16) for i in range(3))
    return (r > 170) & (b > 170) & (g < 100) & (np.abs(r - b) < 70)


def hidden_mask(out: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Pixels of ``out`` the anonymizer filled: fill-coloured there and not near such a pixel in ``source``."""
    already = cv2.dilate(_fill_coloured(source).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return _fill_coloured(out) & ~already


def hidden_whole(out: np.ndarray) -> bool:
    """True for a frame with no sharp edges: blurred to a few cells, or black (fail closed)."""
    green = out[::2, :, 1].astype(np.int16)
    return float(np.mean(np.abs(np.diff(green, axis=1)) > SHARP_STEP)) < WHOLE_MAX_EDGES


# --------------------------------------------------------------------------------------------
# Scoring


@dataclass(slots=True)
class Tally:
    """Figures over the output frames of one run, fed in output order."""

    clip: Clip
    min_height: float
    frames: int = 0  # output frames scored
    band_errors: int = 0  # output frames not matched to a source frame (not scored)
    hidden_whole: int = 0
    face_frames: int = 0
    leaked: int = 0
    exposed: int = 0  # leaked face-frames less than half hidden
    hidden_share_sum: float = 0.0
    tracks: set[int] = field(default_factory=set)
    leaky_tracks: set[int] = field(default_factory=set)
    streaks: dict[int, int] = field(default_factory=dict)
    longest: int = 0
    longest_track: int | None = None
    longest_end: int = 0  # source frame number where the longest leak ended
    leaks: list[tuple[int, int]] = field(default_factory=list)  # (source frame, track) of each leaked face-frame

    def add(self, index: int, hidden: np.ndarray | None) -> None:
        """One output frame showing source frame ``index``; ``hidden`` is None when it is hidden whole."""
        self.frames += 1
        if hidden is None:
            self.hidden_whole += 1
            self.hidden_share_sum += 1.0
        else:
            self.hidden_share_sum += float(hidden[PICTURE_TOP:PICTURE_BOTTOM].mean())
        present = set()
        for x, y, w, h, track in self.clip.faces[index]:
            if h < self.min_height:
                continue
            present.add(track)
            self.face_frames += 1
            self.tracks.add(track)
            share = 1.0 if hidden is None else hidden_share(hidden, (x, y, w, h))
            if share >= PRIVACY_COVER:
                self.streaks[track] = 0
                continue
            self.leaked += 1
            self.leaks.append((index, track))
            self.exposed += share < EXPOSED
            self.leaky_tracks.add(track)
            self.streaks[track] = self.streaks.get(track, 0) + 1
            if self.streaks[track] > self.longest:
                self.longest, self.longest_track, self.longest_end = self.streaks[track], track, index
        for track in set(self.streaks) - present:
            del self.streaks[track]


@dataclass(frozen=True, slots=True)
class Beside:
    """More cameras on the server: ``cameras`` of the single-face clip at ``size``."""

    cameras: int
    size: str

    def clip(self) -> Path:
        sys.path.insert(0, str(ROOT / "tests"))
        from clips import SINGLE_FACE, make_clip

        width, height = (int(v) for v in self.size.split("x"))
        return make_clip(SINGLE_FACE, CACHE.parent / "bench-clips", seconds=10, width=width, height=height, fps=30)

    def __str__(self) -> str:
        return f"1 of {self.cameras + 1} ({self.cameras} x {self.size} beside)"


@dataclass(frozen=True, slots=True)
class Usage:
    """Wall time of a run and the CPU (seconds, all cores) the product and everything else used."""

    seconds: float
    product_cpu_s: float
    others_cpu_s: float  # the rest of the machine, this script excluded


@dataclass(frozen=True, slots=True)
class Row:
    path: str
    profile: str
    tally: Tally | None  # None when the run failed
    usage: Usage | None
    detections_per_s: float | None  # live only
    note: str = ""


class ClipFrames:
    """The clip's decoded frames by number, for output frames that come (mostly) in order."""

    def __init__(self, clip: Clip) -> None:
        self._clip = clip
        self._frames: Iterator[np.ndarray] = iter(())
        self._next = 0
        self._current: tuple[int, np.ndarray] | None = None

    def get(self, index: int) -> np.ndarray:
        if self._current is not None and self._current[0] == index:
            return self._current[1]
        if self._current is None or index < self._current[0]:
            self._frames, self._next = decode(self._clip.path), 0
        while self._next <= index:
            self._current = (self._next, next(self._frames))
            self._next += 1
        assert self._current is not None
        return self._current[1]


def score_file(clip: Clip, output: Path, min_height: float) -> Tally:
    """Output frame i shows source frame i; its bands must say so."""
    tally = Tally(clip, min_height)
    for position, (source, out) in enumerate(zip(decode(clip.path), decode(output))):
        number = read_number(out)
        if number is None and hidden_whole(out):
            tally.add(position, None)
        elif number != position:
            tally.band_errors += 1
        else:
            tally.add(position, hidden_mask(out, source))
    return tally


def score_stream(clip: Clip, jpegs: list[bytes], min_height: float) -> Tally:
    """Each JPEG shows the source frame its bands name; a frame hidden whole is given the frame
    after the one before it (or, before any readable frame, the frame before the next one)."""
    numbers: list[int | None] = []
    whole: list[bool] = []
    for data in jpegs:
        out = simplejpeg.decode_jpeg(data, colorspace="RGB")
        number = read_number(out)
        if number is not None and number >= clip.frames:
            number = None  # a misread that passed the CRC
        numbers.append(number)
        whole.append(number is None and hidden_whole(out))
    guessed: list[int | None] = list(numbers)
    previous: int | None = None
    for i, number in enumerate(numbers):
        if number is not None:
            previous = number
        elif whole[i] and previous is not None:
            previous = guessed[i] = min(previous + 1, clip.frames - 1)
    following: int | None = None
    for i in range(len(numbers) - 1, -1, -1):
        if guessed[i] is not None:
            following = guessed[i]
        elif whole[i] and following is not None:
            following = guessed[i] = max(following - 1, 0)
    tally = Tally(clip, min_height)
    sources = ClipFrames(clip)
    for data, number, is_whole, index in zip(jpegs, numbers, whole, guessed):
        if number is not None:
            out = simplejpeg.decode_jpeg(data, colorspace="RGB")
            tally.add(number, hidden_mask(out, sources.get(number)))
        elif is_whole and index is not None:
            tally.add(index, None)
        else:
            tally.band_errors += 1
    return tally


# --------------------------------------------------------------------------------------------
# Runs


class RunFailed(RuntimeError):
    """The product failed; the message ends with the tail of its log."""


def _streamer() -> str:
    """The ``streamer`` command of the Python running this script (``.venv/bin/streamer``)."""
    return str(Path(sys.executable).parent / "streamer")


def _describe(env: dict[str, str], command: list[str]) -> str:
    return " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items()) + " " + shlex.join(command)


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent not idle since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS  # less idle and iowait


def process_cpu_s(pid: int) -> float:
    """User and system CPU seconds of a running process, all its threads (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """Measures a run: call ``done(product_cpu_s)`` at its end with the CPU the product used."""

    def __init__(self) -> None:
        self._wall, self._busy, self._ours = time.monotonic(), machine_busy_s(), time.process_time()

    def done(self, product_cpu_s: float) -> Usage:
        busy = machine_busy_s() - self._busy
        ours = time.process_time() - self._ours
        return Usage(time.monotonic() - self._wall, product_cpu_s, max(0.0, busy - product_cpu_s - ours))


def run_files(clip: Clip, profile: str, workdir: Path) -> tuple[Path, Usage, str]:
    """``streamer anonymize`` the clip; returns the output, the run's usage and the command."""
    output = workdir / f"files-{profile}.mp4"
    log = workdir / f"files-{profile}.log"
    env = {**ENVIRONMENT, "STREAMER_PIPELINE__DETECTOR__PROFILE": profile}
    command = [_streamer(), "anonymize", str(clip.path), "-o", str(output), "--mode", "fill"]
    meter, before = Meter(), children_cpu_s()
    with log.open("wb") as sink:
        result = subprocess.run(command, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    usage = meter.done(children_cpu_s() - before)
    if result.returncode != 0 or not output.exists():
        raise RunFailed(f"exit status {result.returncode}:\n{_tail(log)}")
    return output, usage, _describe(env, command)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _wait_ready(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RunFailed(f"the server exited with status {process.returncode}:\n{_tail(log)}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    raise RunFailed(f"the server was not ready after {READY_TIMEOUT_S:g} s:\n{_tail(log)}")


class MjpegReader(threading.Thread):
    """Reads every JPEG of the camera's MJPEG stream into ``jpegs`` until ``close()``.

    It keeps the bytes only: decoding waits until the run is over, so the reader takes little CPU
    from the server and never makes it skip frames for this viewer.
    """

    def __init__(self, port: int) -> None:
        super().__init__(name="mjpeg-reader", daemon=True)
        self.jpegs: list[bytes] = []
        self.error: str | None = None
        self._closing = False
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READY_TIMEOUT_S)
        self._conn.request("GET", f"/api/cameras/{CAMERA}/stream.mjpeg")
        self._sock = self._conn.sock  # http.client may let go of it once the answer has begun
        self._response = self._conn.getresponse()
        kind = self._response.getheader("Content-Type", "")
        if self._response.status != 200 or "boundary=" not in kind:
            raise RunFailed(f"stream.mjpeg answered {self._response.status} {kind}")
        self._boundary = b"--" + kind.split("boundary=", 1)[1].strip().encode()

    def run(self) -> None:
        response = self._response
        try:
            while line := response.readline():
                if line.strip() != self._boundary:
                    continue
                length = 0
                while header := response.readline().strip():
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                data = response.read(length)
                if len(data) == length:
                    self.jpegs.append(data)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if not self._closing:
                self.error = str(exc)

    def close(self) -> None:
        """Ends the stream: shutting the socket down wakes the blocked read."""
        self._closing = True
        with contextlib.suppress(OSError):  # the server may have closed it already
            self._sock.shutdown(socket.SHUT_RDWR)
        self.join(10)
        self._conn.close()


def run_live(clip: Clip, profile: str, workdir: Path, beside: Beside | None) -> tuple[list[bytes], dict, Usage, str]:
    """Serve the clip as a camera played once (next to the ``beside`` cameras) and read its MJPEG
    stream; returns the JPEGs, the camera's final status, the usage while it streamed and the command."""
    port = _free_port()
    log = workdir / f"live-{profile}.log"
    camera = [{"name": CAMERA, "source": str(clip.path), "loop": False}]
    if beside is not None:
        other = beside.clip()
        camera += [{"name": f"beside{i}", "source": str(other)} for i in range(beside.cameras)]
    env = {
        **ENVIRONMENT,
        "STREAMER_PIPELINE__DETECTOR__PROFILE": profile,
        "STREAMER_CAMERAS": json.dumps(camera),
        # the still-image workers are not used here: one, with the lightest detector
        "STREAMER_SERVER__WORKERS": "1",
        "STREAMER_DETECTOR__PROFILE": "fast",
        "STREAMER_RTSP__ENABLED": "false",
    }
    command = [_streamer(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        _wait_ready(process, port, log)
        meter, before = Meter(), process_cpu_s(process.pid)
        reader = MjpegReader(port)
        reader.start()
        deadline = time.monotonic() + clip.frames / FPS + 60
        while (status := _get_json(port, f"/api/cameras/{CAMERA}"))["state"] != "ended":
            if time.monotonic() > deadline or not reader.is_alive():
                reader.close()
                raise RunFailed(f"the camera is {status['state']} at the deadline or the stream broke "
                                f"({reader.error}):\n{_tail(log)}")
            time.sleep(0.5)
        time.sleep(FLUSH_S)  # the frames still in the pipeline when the file ended
        usage = meter.done(process_cpu_s(process.pid) - before)
        status = _get_json(port, f"/api/cameras/{CAMERA}")
        reader.close()
        jpegs = reader.jpegs
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return jpegs, status, usage, _describe(env, command)


# --------------------------------------------------------------------------------------------
# Report


def git_commit() -> str:
    """The commit, and the tracked files changed since it (they are part of what was measured)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return f"{commit} with uncommitted changes to {', '.join(changed)}" if changed else commit


COLUMNS = (
    "path", "profile", "frames scored (of clip)", "frames hidden whole", "face-frames",
    f"leaked face-frames (< {EXPOSED:.0%} hidden)",
    "leaked / 1000 face-frames", "tracks", "tracks that leaked", "longest leak (frames)", "picture hidden",
    "detections / s", "run s", "product CPU %", "others CPU %",
)


def cells(row: Row, clip_frames: int) -> list[str]:
    t = row.tally
    head = [row.path, row.profile]
    if t is None or row.usage is None:
        return head + [f"failed: {row.note}"] + [""] * (len(COLUMNS) - 3)
    per_1000 = f"{1000 * t.leaked / t.face_frames:.1f}" if t.face_frames else "-"
    return head + [
        f"{t.frames} ({clip_frames})", str(t.hidden_whole), str(t.face_frames), f"{t.leaked} ({t.exposed})", per_1000,
        str(len(t.tracks)), str(len(t.leaky_tracks)), str(t.longest),
        f"{100 * t.hidden_share_sum / t.frames:.1f}%" if t.frames else "-",
        "-" if row.detections_per_s is None else f"{row.detections_per_s:.1f}", f"{row.usage.seconds:.0f}",
        f"{100 * row.usage.product_cpu_s / row.usage.seconds:.0f}",
        f"{100 * row.usage.others_cpu_s / row.usage.seconds:.0f}",
    ]


def print_table(rows: list[Row], clip_frames: int, markdown: bool) -> None:
    table = [list(COLUMNS)] + [cells(row, clip_frames) for row in rows]
    if markdown:
        print("| " + " | ".join(table[0]) + " |")
        print("|" + "---|" * len(COLUMNS))
        for line in table[1:]:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        print("  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip())


def where(clip: Clip, tally: Tally) -> str:
    """Which photo and frames the longest leak was in, for looking at it."""
    if tally.longest_track is None:
        return "no leaks"
    shot = max((s for s in clip.shots if s["first_track"] <= tally.longest_track), key=lambda s: s["first_track"])
    first = tally.longest_end - tally.longest + 1
    return (f"longest leak: {shot['file']} face {tally.longest_track - shot['first_track']}, "
            f"{tally.longest} scored frames ending at frame {tally.longest_end} (from about {first})")


LEAK_KINDS = (
    "never found", "found later only", "found earlier only", "found before and after", "found there, box short",
)


def leak_kinds(clip: Clip, tally: Tally, profile: str) -> dict[str, int]:
    """Why each leaked face-frame leaked, by where the profile's detector (alone, at its threshold,
    on every frame of the clip) finds that face (a box overlapping the labelled one by the
    tracker's ``SAME_FACE_IOU``): nowhere in its track, only on later or only on earlier frames of
    it, on both, or on that very frame (the box hidden there was short of the labelled one)."""
    sys.path.insert(0, str(ROOT))
    from streamer.config import Settings
    from streamer.faces.detection import Face, ious
    from streamer.faces.detectors import create_detector
    from streamer.faces.tracking import SAME_FACE_IOU

    settings = Settings(pipeline={"detector": {"profile": profile}}).pipeline.detector
    key = hashlib.sha1(settings.model_dump_json().encode()).hexdigest()[:10]  # a changed detector: run it again
    cache = clip.path.with_name(f"{clip.path.stem}-{profile}-{key}-detections.json")
    if not cache.exists():
        detector = create_detector(settings)
        try:
            boxes = [[f.box for f in detector.detect(pixels, settings.threshold)] for pixels in decode(clip.path)]
        finally:
            detector.close()
        cache.write_text(json.dumps(boxes))
    found_on: dict[int, set[int]] = {}  # track -> frames where the detector finds it
    for index, (labelled, boxes) in enumerate(zip(clip.faces, json.loads(cache.read_text()))):
        overlaps = ious([Face(tuple(f[:4]), 1.0) for f in labelled], [Face(tuple(b), 1.0) for b in boxes])
        for face, row in zip(labelled, overlaps):
            if row.max(initial=0) >= SAME_FACE_IOU:
                found_on.setdefault(face[4], set()).add(index)
    counts = dict.fromkeys(LEAK_KINDS, 0)
    for index, track in tally.leaks:
        frames = found_on.get(track, set())
        before, after = any(f < index for f in frames), any(f > index for f in frames)
        kind = ("found there, box short" if index in frames else "found before and after" if before and after
                else "found earlier only" if before else "found later only" if after else "never found")
        counts[kind] += 1
    return counts


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", choices=PROFILES, default=list(PROFILES))
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the shots (a 1 s lead-in comes first)")
    parser.add_argument("--shots", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-height", type=float, default=32.0, help="smallest face counted, px")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the faces-dev folder")
    parser.add_argument("--beside", nargs=2, metavar=("N", "WxH"),
                        help="live: N more cameras at WxH on the server, sharing its detector")
    parser.add_argument("--keep", action="store_true", help=f"keep outputs and logs under {CACHE / 'runs'}")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--kinds", action="store_true",
                        help="also say why each leaked face-frame leaked: where the profile's detector finds that face")
    args = parser.parse_args(argv)
    command = shlex.join([os.path.relpath(sys.executable), os.path.relpath(sys.argv[0]), *argv])
    print(f"command: {command}")
    print(f"date: {datetime.now().astimezone().isoformat(timespec='seconds')}; commit: {git_commit()}")
    print(f"machine: {cpu()}")
    clip = build(ClipSpec(args.seed, args.seconds, args.shots), args.data)
    counted = sum(h >= args.min_height for frame in clip.faces for _, _, _, h, _ in frame)
    print(f"clip: {clip.path} ({clip.frames} frames, {len(clip.shots)} shots; {counted} face-frames of "
          f">= {args.min_height:g} px); truth: {clip.truth_path}")
    if args.keep:
        workdir = CACHE / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S")
        workdir.mkdir(parents=True)
        scratch = None
    else:
        scratch = tempfile.TemporaryDirectory(prefix="motion-")
        workdir = Path(scratch.name)
    beside = Beside(int(args.beside[0]), args.beside[1]) if args.beside else None
    rows: list[Row] = []
    try:
        for path in args.paths:
            for profile in args.profiles:
                rows.append(run_one(path, profile, clip, workdir, args.min_height, args.keep, beside))
                if args.kinds and rows[-1].tally is not None:
                    kinds = leak_kinds(clip, rows[-1].tally, profile)
                    print("  leaked face-frames by kind: " + ", ".join(f"{k} {n}" for k, n in kinds.items()), flush=True)
    finally:
        if scratch is not None:
            scratch.cleanup()
    print()
    print_table(rows, clip.frames, args.markdown)
    print()
    print(f"command: {command}")
    if args.keep:
        print(f"outputs and logs: {workdir}")


def run_one(
    path: str, profile: str, clip: Clip, workdir: Path, min_height: float, keep: bool, beside: Beside | None = None
) -> Row:
    """One (path, profile) run, scored; prints what it ran and a line of details."""
    try:
        if path == "files":
            output, usage, ran = run_files(clip, profile, workdir)
            print(f"{path}/{profile}: {ran}", flush=True)
            tally = score_file(clip, output, min_height)
            row = Row(path, profile, tally, usage, None)
            details = ""
        else:
            jpegs, status, usage, ran = run_live(clip, profile, workdir, beside)
            if beside is not None:
                path = f"live, {beside}"
            print(f"{path}/{profile}: {ran}", flush=True)
            if keep:
                (workdir / f"live-{profile}.mjpeg").write_bytes(b"".join(jpegs))
            tally = score_stream(clip, jpegs, min_height)
            detect_rate = status["frames"]["detect"] / (clip.frames / FPS)
            row = Row(path, profile, tally, usage, detect_rate)
            dropped = status["dropped"]
            details = (f"server: {status['frames']['capture']} captured, {status['frames']['output']} out, "
                       f"{status['fail_closed_frames']} hidden whole, dropped {dropped['detect']} / "
                       f"{dropped['anonymize']} / {dropped['encode']} (detect / anonymize / encode), latency "
                       f"{status['latency_ms']} ms, state {status['state']}; received {len(jpegs)} JPEGs; ")
    except (RunFailed, OSError) as exc:  # OSError: the server went away
        print(f"{path}/{profile}: FAILED: {exc}", flush=True)
        return Row(path, profile, None, None, None, str(exc).splitlines()[0])
    print(f"  {details}{tally.band_errors} frames unmatched; {where(clip, tally)}", flush=True)
    return row


if __name__ == "__main__":
    main()
