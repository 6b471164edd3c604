"""Anonymizing a video file offline: every frame detected, same frames and timestamps out.

Frames are detected on every worker of a ``WorkerPool`` at once, a few frames ahead of the one
being anonymized and encoded, and their detections go to the tracker in frame order. A frame is
hidden only once the detections of the next few frames are known, as a live camera's frame waits
for the next detection: a face the detector misses on a frame is hidden there by one box around
where it was before and after, and a face first seen a little later is hidden on the frames
just before it too. Each face's box also follows the face from frame to frame (``Follower``), and
keeps following it for ``follow_s`` after the detector last saw it.

Faces are also followed back in time. A zoom, a mask or motion blur can keep the detector from
seeing a face for a second or more after it came into view; a face found on a frame but on none
of the ``LOOKAHEAD_FRAMES + 1`` frames before it is followed back (optical flow, ``follow_back``)
over the frames still unwritten before it, until it is lost or reaches a frame where it was found,
and hidden where it was on each. For that, frames are held ``follow_back_s`` longer before they
are written (those extra frames: at most ``MAX_BACK_FRAMES``, and at most ``MAX_BACK_BYTES`` of
pixels).

The tracker counts in frames, not seconds: a face is held for ``hold_s`` worth of frames at the
file's nominal rate, and never fewer than the look-ahead, so a 1-fps export, a timelapse or a gap
in the timestamps holds faces as well as a 30-fps clip does. Fail closed: a frame whose detection
failed, or whose faces the tracker cannot answer for, is hidden whole (``fail_mode``) and kept.

Phone videos carry a display matrix (rotation): frames are turned upright before detection and
written upright, with no rotation, so the output plays the way the input did.

The output is H.264 in the container the output name asks for. Audio is dropped unless asked for
(then copied untouched); the input's container metadata (GPS, device names) is not copied.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import takewhile
from pathlib import Path
from typing import Callable

import av
import numpy as np

from ..config import AnonymizerSettings, FailMode
from ..faces.anonymizer import Anonymizer, hide_all
from ..faces.zones import ZoneMasks
from ..faces.detection import Face, ious
from ..faces.following import Follower, follow_back, grey_copy
from ..faces.tracking import SAME_FACE_IOU, Tracker
from .workers import WorkerPool

EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".m4v", ".avi", ".webm"})
# Later frames whose detections are known before a frame is hidden (see the module docstring).
LOOKAHEAD_FRAMES = 2
# Frames held back so that faces first found on later frames can be followed back over them: at
# most this many, and at most this much memory of pixels (1 s of 1080p at 30 fps is 178 MiB).
MAX_BACK_FRAMES = 150
MAX_BACK_BYTES = 512 * 2**20


class VideoError(RuntimeError):
    """The video cannot be read or written."""


@dataclass(frozen=True, slots=True)
class VideoReport:
    frames: int
    faces: int
    fps: Fraction | None
    hidden_whole: int  # frames whose faces were not known (detection failed): hidden entirely


def queue_size(workers: int) -> int:
    """How many detections a video may have waiting for ``workers`` workers at once."""
    return 1 + LOOKAHEAD_FRAMES + MAX_BACK_FRAMES + 2 * workers


def frame_count(path: Path) -> int:
    """Frames the container declares for its video stream (0 when it does not say)."""
    with av.open(str(path)) as container:
        return container.streams.video[0].frames if container.streams.video else 0


def display_rotation(path: Path) -> int:
    """Degrees (a multiple of 90, counter-clockwise) by which players turn the video's frames."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return round((frame.rotation or 0) / 90) * 90 % 360
    return 0


@dataclass(slots=True)
class _Pending:
    """A decoded, upright frame waiting for its detections; ``index`` is its frame number."""

    pixels: np.ndarray
    pts: int | None
    time_base: Fraction | None
    index: int
    faces: Future[list[Face]]
    earlier: list[Face] = field(default_factory=list)  # faces first found on later frames, followed back here
    flow: tuple[np.ndarray, float] | None = None  # its grey copy for following and that copy's scale, once made

    def found(self) -> list[Face]:
        """The faces detected on this frame ([] when its detection failed: it is hidden whole)."""
        return self.faces.result() if self.faces.exception() is None else []

    def flow_grey(self) -> tuple[np.ndarray, float]:
        """Its grey copy to follow faces on, and that copy's px per frame px."""
        if self.flow is None:
            self.flow = grey_copy(self.pixels)
        return self.flow


class _FrameQueue:
    """Decoded frames waiting for their own detections and those of the next ``LOOKAHEAD_FRAMES``
    frames, and ``back_frames`` more for faces found later to be followed back over them; then,
    oldest first, hidden (or hidden whole) and handed to ``write``."""

    def __init__(
        self,
        pool: WorkerPool,
        threshold: float,
        hide: Anonymizer,
        fail_mode: FailMode,
        hold_frames: int,
        follow_frames: int,
        back_frames: int,
        write: Callable[[np.ndarray, _Pending], None],
        zones: ZoneMasks,
    ) -> None:
        self._pool, self._threshold, self._hide, self._fail_mode, self._write = pool, threshold, hide, fail_mode, write
        self._zones = zones
        self._tracker = Tracker(hold_frames)
        self._follower = Follower(follow_frames)
        self._pending: deque[_Pending] = deque()  # oldest first
        self._tracked = 0  # how many of them, from the oldest, have their detections in the tracker
        self._back_frames = back_frames
        self._scanned = 0  # how many of them, from the oldest, new faces were followed back from
        # the faces found on the newest frames scanned, over the look-ahead: a face found on one of
        # them is hidden on the frames between by the tracker (one box around before and after)
        self._recent: deque[list[Face]] = deque(maxlen=1 + LOOKAHEAD_FRAMES)
        # the oldest frame, the frames whose detections it waits for, those a new face is followed
        # back from, and enough more to keep every worker busy meanwhile
        self._held_back = 1 + LOOKAHEAD_FRAMES + back_frames + 2 * pool.workers
        self.frames = self.faces = self.hidden_whole = 0

    def add(self, pixels: np.ndarray, pts: int | None, time_base: Fraction | None) -> None:
        job = self._pool.submit(lambda detector, stop: detector.detect(pixels, self._threshold))
        self._pending.append(_Pending(pixels, pts, time_base, self.frames + len(self._pending), job))
        if len(self._pending) >= self._held_back:
            self._finish_oldest()

    def drain(self) -> None:
        while self._pending:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        if self._back_frames:
            while self._scanned < min(1 + LOOKAHEAD_FRAMES + self._back_frames, len(self._pending)):
                self._follow_back(self._scanned)
                self._scanned += 1
        # this frame's detections and the next frames' go to the tracker, in frame order; a frame
        # whose detection failed leaves no entry, so it is not taken for a frame without faces
        while self._tracked < min(1 + LOOKAHEAD_FRAMES, len(self._pending)):
            later = self._pending[self._tracked]
            if later.faces.exception() is None:
                self._tracker.update(later.index, later.faces.result())
            self._tracked += 1
        frame = self._pending.popleft()
        self._tracked -= 1
        self._scanned = max(0, self._scanned - 1)
        detected = frame.faces.exception() is None
        held = self._tracker.faces_at(frame.index) if detected else None
        followed = self._follower.step(frame.pixels, frame.index, frame.faces.result() if detected else None,
                                       frame.flow)
        if held is None:
            pixels = hide_all(frame.pixels, self._fail_mode)
            self.hidden_whole += 1
        else:
            pixels = self._hide.apply(frame.pixels, held + followed + frame.earlier)
            self.faces += len(held)
        self._write(self._zones.apply(pixels), frame)  # privacy zones last, over everything
        self.frames += 1

    def _follow_back(self, position: int) -> None:
        """Follow each face found on the pending frame at ``position`` but not on the frames of the
        look-ahead before it back through the frames still pending before it, to the first where
        it was found."""
        frame = self._pending[position]
        found = frame.found()
        recent = [face for faces in self._recent for face in faces]
        new = [face for face, overlaps in zip(found, ious(found, recent)) if overlaps.max(initial=0) < SAME_FACE_IOU]
        self._recent.append(found)
        if not new:
            return
        height, width = frame.pixels.shape[:2]
        # newest first, back to a change of picture size (a grey copy's scale would differ)
        before = list(takewhile(lambda pending: pending.pixels.shape == frame.pixels.shape,
                                (self._pending[q] for q in range(position - 1, -1, -1))))
        for face in new:
            greys = (pending.flow_grey()[0] for pending in [frame, *before])
            for there, box in zip(before, follow_back(greys, frame.flow_grey()[1], face, width, height)):
                if ious([box], there.found()).max(initial=0) >= SAME_FACE_IOU:
                    break  # found there: the tracker and follower cover it from then on
                there.earlier.append(box)


def _video_output(dst: av.container.OutputContainer, video_in: av.video.stream.VideoStream, rotation: int):
    """An H.264 stream in ``dst`` for the input's frames turned upright (even sides, same timing)."""
    width, height = video_in.codec_context.width, video_in.codec_context.height
    if rotation in (90, 270):
        width, height = height, width
    video_out = dst.add_stream("libx264", rate=video_in.average_rate or video_in.guessed_rate)
    video_out.width = width // 2 * 2
    video_out.height = height // 2 * 2
    video_out.pix_fmt = "yuv420p"
    # the encoder counts in the input's time base too: in 1/rate units, frames of a clip whose
    # timestamps are irregular (gaps, variable rate) would round onto each other
    video_out.time_base = video_out.codec_context.time_base = video_in.time_base
    video_out.options = {"crf": "20", "preset": "veryfast"}
    return video_out


def anonymize_video(
    source: Path,
    target: Path,
    pool: WorkerPool,
    threshold: float,
    anonymizer: AnonymizerSettings,
    hold_s: float,
    follow_s: float = 0.0,
    follow_back_s: float = 0.0,
    fail_mode: FailMode = FailMode.blur,
    keep_audio: bool = False,
    on_frame: Callable[[], None] | None = None,
    zones: ZoneMasks | None = None,
) -> VideoReport:
    try:
        rotation = display_rotation(source)
        src = av.open(str(source))
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot open: {exc}") from None
    except IndexError:
        raise VideoError("no video stream") from None
    with src:
        video_in = src.streams.video[0]
        video_in.thread_type = "AUTO"
        rate = video_in.average_rate or video_in.guessed_rate
        audio_in = src.streams.audio[0] if keep_audio and src.streams.audio else None
        try:
            dst = av.open(str(target), "w")
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot write {target}: {exc}") from None
        with dst:
            video_out = _video_output(dst, video_in, rotation)
            audio_out = dst.add_stream_from_template(audio_in) if audio_in else None

            def write(pixels: np.ndarray, frame: _Pending) -> None:
                out = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                out.pts, out.time_base = frame.pts, frame.time_base
                dst.mux(video_out.encode(out))
                if on_frame:
                    on_frame()

            # a face stays hidden for hold_s at the nominal rate, and at least over the look-ahead
            hold_frames = max(math.ceil(hold_s * float(rate or 30)), LOOKAHEAD_FRAMES + 1)
            follow_frames = math.ceil(follow_s * float(rate or 30))
            frame_bytes = max(1, video_out.width * video_out.height * 3)
            back_frames = min(math.ceil(follow_back_s * float(rate or 30)), MAX_BACK_FRAMES,
                              MAX_BACK_BYTES // frame_bytes)
            queue = _FrameQueue(pool, threshold, Anonymizer(anonymizer), fail_mode, hold_frames, follow_frames,
                                back_frames, write, zones or ZoneMasks())
            try:
                for packet in src.demux(*[video_in] + ([audio_in] if audio_in else [])):
                    if packet.stream is video_in:
                        for frame in packet.decode():
                            pixels = np.rot90(frame.to_ndarray(format="rgb24"), rotation // 90)
                            # odd sizes: H.264 wants even; rotated views: the encoder wants contiguous rows
                            queue.add(np.ascontiguousarray(pixels[: video_out.height, : video_out.width]),
                                      frame.pts, frame.time_base)
                    elif packet.dts is not None:
                        packet.stream = audio_out
                        dst.mux(packet)
                queue.drain()
                dst.mux(video_out.encode(None))
            except av.FFmpegError as exc:
                raise VideoError(f"failed after {queue.frames} frames: {exc}") from None
    return VideoReport(queue.frames, queue.faces, rate, queue.hidden_whole)
