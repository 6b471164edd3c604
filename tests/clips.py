"""Short H.264 test clips cut from the shared real videos, made with ffmpeg and cached.

    from clips import SINGLE_FACE, make_clip
    path = make_clip(SINGLE_FACE, tmp_path_factory.getbasetemp() / "clips", seconds=3)

The clips look like a camera's stream: H.264 Main profile without B-frames, a keyframe every
second, constant frame rate, no audio, moov atom first (``+faststart``). A clip is made once
per folder and parameters; a later call with the same ones returns the cached file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from conftest import SHARED

VIDEO = SHARED / "video"

# The clips in shared/data/video (see the README there).
SINGLE_FACE = "egoblur_gen1_single_face_608x1080_20s.mp4"  # one face, 30 fps, 20 s, portrait
MEETING = "egoblur_gen2_meeting_2560x1920_1.4s.mp4"  # two faces, fisheye, 10 fps, 1.4 s
PEDESTRIANS = "opencv_vtest_pedestrians_768x576_20s.mp4"  # tiny faces, 10 fps, 20 s


def source_clip(name: str | Path) -> Path:
    """A clip in shared/data/video by file name, or any path as it is."""
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = VIDEO / name
    if not path.is_file():
        raise FileNotFoundError(f"no clip {path}; set SHARED_DATA to the shared/data folder")
    return path


def make_clip(
    source: str | Path,
    folder: str | Path,
    *,
    seconds: float = 3.0,
    start: float = 0.0,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    crf: int = 23,
) -> Path:
    """Cut ``seconds`` of ``source`` from ``start`` into a camera-like H.264 MP4 in ``folder``.

    The picture is scaled to fit ``width`` x ``height`` and padded with black (a portrait clip
    gets bars left and right); ``fps`` is reached by dropping or repeating frames. A source shorter
    than ``start + seconds`` is looped to fill the time. Returns the path of the clip.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not installed (Debian package ffmpeg; see TEST_APT in the Makefile)")
    src = source_clip(source)
    if width % 2 or height % 2:
        raise ValueError("width and height must be even for yuv420p")
    stat = src.stat()
    key = f"{src.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{seconds}|{start}|{width}|{height}|{fps}|{crf}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{src.stem}-{width}x{height}-{fps}fps-{seconds:g}s-{digest}.mp4"
    if out.exists():
        return out

    vf = (
        f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
        f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps}"
    )
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.mp4")
    cmd = [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-stream_loop", "-1", "-ss", f"{start:g}", "-i", str(src), "-t", f"{seconds:g}",
        "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", vf,
        # x264's output depends on its thread count, which defaults to 1.5 per core: pinned to what
        # the 2-core machines the tests were tuned on use, so every machine makes the same clip
        "-c:v", "libx264", "-threads", "3", "-preset", "veryfast", "-crf", str(crf),
        "-profile:v", "main", "-pix_fmt", "yuv420p", "-bf", "0",
        "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0",
        "-movflags", "+faststart", str(tmp),
    ]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed on {src}: {exc.stderr.strip()}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)  # atomic, so a parallel test never sees half a file
    return out
