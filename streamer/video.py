"""Anonymizing a video file offline: every frame detected, same frames and timestamps out.

Frames are detected on every worker of a ``WorkerPool`` at once, a few frames ahead of the one
being anonymized and encoded, and their detections go to the tracker in frame order. A frame is
hidden only once the detections of the next few frames are known, as a live camera's frame waits
for the next detection: a face the detector misses on a frame is hidden there by one box around
where it was before and after, and a face first seen a little later is hidden on the frames
just before it too.

The output is H.264 in the container the output name asks for. Audio is dropped unless asked for
(then copied untouched); the input's container metadata (GPS, device names) is not copied.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

from .anonymize import Anonymizer
from .config import AnonymizerSettings
from .detection import Face
from .tracking import Tracker
from .workers import WorkerPool

EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".m4v", ".avi", ".webm"})
# Later frames whose detections are known before a frame is hidden (see the module docstring).
LOOKAHEAD_FRAMES = 2


class VideoError(RuntimeError):
    """The video cannot be read or written."""


@dataclass(frozen=True, slots=True)
class VideoReport:
    frames: int
    faces: int
    fps: Fraction | None


def frame_count(path: Path) -> int:
    """Frames the container declares for its video stream (0 when it does not say)."""
    with av.open(str(path)) as container:
        return container.streams.video[0].frames if container.streams.video else 0


@dataclass(frozen=True, slots=True)
class _Pending:
    """A decoded frame waiting for its detections."""

    pixels: np.ndarray
    pts: int | None
    time_base: Fraction | None
    t: float
    faces: Future[list[Face]]


def anonymize_video(
    source: Path,
    target: Path,
    pool: WorkerPool,
    threshold: float,
    anonymizer: AnonymizerSettings,
    hold_s: float,
    keep_audio: bool = False,
    on_frame: Callable[[], None] | None = None,
) -> VideoReport:
    hide = Anonymizer(anonymizer)
    tracker = Tracker(hold_s)
    frames = faces = 0
    pending: deque[_Pending] = deque()  # decoded frames, oldest first
    tracked = 0  # how many of them, from the oldest, have their detections in the tracker
    # the oldest frame, the frames whose detections it waits for, and enough more to keep every
    # worker busy meanwhile
    held_back = 1 + LOOKAHEAD_FRAMES + 2 * pool.workers

    def finish_oldest() -> None:
        nonlocal frames, faces, tracked
        # this frame's detections and the next frames' go to the tracker, in frame order
        while tracked < min(1 + LOOKAHEAD_FRAMES, len(pending)):
            later = pending[tracked]
            tracker.update(later.t, later.faces.result())
            tracked += 1
        frame = pending.popleft()
        tracked -= 1
        held = tracker.faces_at(frame.t) or []
        hide.apply(frame.pixels, held)
        out = av.VideoFrame.from_ndarray(frame.pixels, format="rgb24")
        out.pts, out.time_base = frame.pts, frame.time_base
        dst.mux(video_out.encode(out))
        frames += 1
        faces += len(held)
        if on_frame:
            on_frame()

    try:
        src = av.open(str(source))
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot open: {exc}") from None
    with src:
        if not src.streams.video:
            raise VideoError("no video stream")
        video_in = src.streams.video[0]
        video_in.thread_type = "AUTO"
        audio_in = src.streams.audio[0] if keep_audio and src.streams.audio else None
        try:
            dst = av.open(str(target), "w")
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot write {target}: {exc}") from None
        with dst:
            rate = video_in.average_rate or video_in.guessed_rate
            video_out = dst.add_stream("libx264", rate=rate)
            video_out.width = video_in.codec_context.width // 2 * 2
            video_out.height = video_in.codec_context.height // 2 * 2
            video_out.pix_fmt = "yuv420p"
            video_out.time_base = video_in.time_base
            video_out.options = {"crf": "20", "preset": "veryfast"}
            audio_out = dst.add_stream_from_template(audio_in) if audio_in else None
            streams = [video_in] + ([audio_in] if audio_in else [])
            try:
                for packet in src.demux(*streams):
                    if audio_in is not None and packet.stream is audio_in:
                        if packet.dts is not None:
                            packet.stream = audio_out
                            dst.mux(packet)
                        continue
                    for frame in packet.decode():
                        pixels = frame.to_ndarray(format="rgb24")
                        if pixels.shape[:2] != (video_out.height, video_out.width):  # odd sizes: H.264 wants even
                            pixels = np.ascontiguousarray(pixels[: video_out.height, : video_out.width])
                        index = frames + len(pending)
                        t = float(frame.time) if frame.time is not None else index / float(rate or 30)
                        job = pool.submit(lambda detector, stop, image=pixels: detector.detect(image, threshold))
                        pending.append(_Pending(pixels, frame.pts, frame.time_base, t, job))
                        if len(pending) >= held_back:
                            finish_oldest()
                while pending:
                    finish_oldest()
                dst.mux(video_out.encode(None))
            except av.FFmpegError as exc:
                raise VideoError(f"failed after {frames} frames: {exc}") from None
    return VideoReport(frames, faces, rate)
