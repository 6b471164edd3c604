"""One pool of detector threads for every live camera of the process.

Each camera takes a seat at the scheduler and offers it its newest frame; a frame not yet taken
when a newer one comes is dropped (and counted), as between any two stages. ``workers`` threads
(one per core by default), each with its own detector, take the next frame from the seat served
least recently: a camera whose detection is slow (a larger picture) cannot starve the others, a
camera with nothing to offer takes no turn, and a seat that leaves frees its share at once. One
camera alone gets every worker: two frames of it may be detected at once, which the tracker
accepts in any order. ``detect_fps`` caps each camera's rate.

A detection looks at the whole frame, or only where the camera's ``focus`` says a face can be:
around the faces it knows and where its picture changed since its last whole-frame detection
(``faces/focus.py``, ``live/changes.py``), which costs a fraction. Such a look, when complete, answers
for its frame as a whole detection does. Whole frames are still what a camera's changes are
measured from, so each camera gets one at least every ``whole_every_s`` (a seat overdue goes first),
after a scene cut, and whenever its focus has nothing to offer. Looks are made
only while other cameras wait for a worker: otherwise the frame is detected whole (on the motion
benchmark, a camera alone looked at only where its picture changed leaked 14 face-frames in 1000
instead of 5: a face the detector misses on one frame is often found on the next whole one, not
only where pixels changed). A camera whose picture changed too much since its last whole
detection gets a look that only follows its known faces (which does not answer for the frame).

A failing detector is closed, reported to the camera whose frame it failed on (which then hides
its frames whole until a detection succeeds) and made anew for the next frame, after a pause. The
scheduler's threads start with the first seat and end with the last.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Callable

from ..config import PipelineSettings
from ..faces.detection import Detector, Face
from ..faces.detectors import create_detector
from ..faces.focus import Look, detect_look
from ..redact import redact
from .metrics import DETECTOR_BUSY_SECONDS, percentiles_ms
from .sources import Frame
from ..stills.workers import cpu_count

log = logging.getLogger("streamer.pipeline")

_POLL_S = 0.25  # how often an idle worker looks at the stop flag
# Detector threads run this much nicer than the cameras' own: when the cores are short, capture,
# anonymizing and encoding keep their 30 fps and detection gets the rest (measured on four 1080p
# cameras on 2 cores: 30 fps out instead of 26, latency p50 240 ms instead of 550).
NICE = 5
_FAILED_PAUSE_S = 1.0  # a worker whose detector failed waits this long before it takes a frame again


@dataclass(frozen=True, slots=True)
class Detection:
    frame: Frame
    faces: list[Face]
    detect_s: float  # the detector's time
    wait_s: float  # from the frame's offer to the start of its detection
    whole: bool  # the whole frame was looked at (else only where the camera's focus said)
    complete: bool  # every face on the frame was looked for: whole, or a complete look


class Seat:
    """A camera's place at the scheduler. ``on_result`` gets each ``Detection``; ``on_error`` an
    exception from the detector (or from ``on_result``, with ``detector=False``); ``focus`` says
    where to look on a frame instead of all of it (None, or no focus: the whole frame)."""

    def __init__(
        self,
        scheduler: DetectionScheduler,
        name: str,
        on_result: Callable[[Detection], None],
        on_error: Callable[[Exception, bool], None],
        focus: Callable[[Frame], Look | None] | None,
        min_period_s: float,
    ) -> None:
        self.name = name
        self._scheduler = scheduler
        self._on_result, self._on_error, self._focus = on_result, on_error, focus
        self._min_period_s = min_period_s
        self._pending: tuple[Frame, float] | None = None  # the newest frame and when it was offered
        self._served = -float("inf")  # when a worker last took a frame of this seat
        self._whole = -float("inf")  # ...and last took one to detect whole
        self._cut: float | None = None  # capture time of a scene cut no whole detection has started on
        self.dropped = 0
        self._waits: deque[float] = deque(maxlen=300)

    def offer(self, frame: Frame) -> bool:
        """The camera's newest frame for detection; True when an untaken older one was dropped for it."""
        return self._scheduler._offer(self, frame)

    def look_whole(self, captured: float) -> None:
        """Detect this camera's frame captured at ``captured`` (or a later one) whole, as soon as
        a worker is free: its scene changed there."""
        with self._scheduler._cond:
            self._cut = captured

    def leave(self) -> None:
        """No more frames from this camera; a detection already running still reports. The last
        seat to leave waits (up to 5 s) until the scheduler's threads have ended."""
        self._scheduler._leave(self)

    def wait_ms(self) -> dict[str, float] | None:
        """Time frames waited for a worker, over the newest detections: median and 95th percentile."""
        return percentiles_ms(self._waits)


class DetectionScheduler:
    @classmethod
    def for_pipeline(cls, settings: PipelineSettings) -> DetectionScheduler:
        """The scheduler of ``pipeline.*`` settings, with their live detector."""
        return cls(
            partial(create_detector, settings.detector),
            settings.detector.threshold,
            workers=settings.detect_workers,
            detect_fps=settings.detect_fps,
            whole_every_s=settings.whole_every_s,
        )

    def __init__(
        self,
        detector_factory: Callable[[], Detector],
        threshold: float,
        workers: int = 0,
        detect_fps: float = 0.0,
        whole_every_s: float = 0.0,
    ) -> None:
        self._factory = detector_factory
        self._threshold = threshold
        self._workers = workers  # 0: one per core
        self._min_period_s = 1.0 / detect_fps if detect_fps else 0.0
        self._whole_every_s = whole_every_s  # 0: every detection is whole
        self._seats: list[Seat] = []
        self._threads: list[threading.Thread] = []
        self._cond = threading.Condition()

    @property
    def workers(self) -> int:
        """Detector threads: one per core by default, however many cameras. (When every detection
        was whole, one per camera got detection a larger share of a busy CPU; with detections
        around known faces and niced detector threads, more threads than cores only compete with
        each other: four 1080p cameras on 2 cores got 7.3 detections a second each, p95 latency
        284 ms, from two threads, and 6.2 and 612 ms from four.)"""
        return self._workers or cpu_count()

    def join(
        self,
        name: str,
        on_result: Callable[[Detection], None],
        on_error: Callable[[Exception, bool], None],
        focus: Callable[[Frame], Look | None] | None = None,
    ) -> Seat:
        seat = Seat(self, name, on_result, on_error, focus, self._min_period_s)
        with self._cond:
            self._seats.append(seat)
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            while len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, name=f"detector-{len(self._threads)}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return seat

    def _offer(self, seat: Seat, frame: Frame) -> bool:
        with self._cond:
            dropped = seat._pending is not None
            if dropped:
                seat.dropped += 1
            seat._pending = (frame, time.monotonic())
            self._cond.notify()
            return dropped

    def _leave(self, seat: Seat, timeout: float = 5.0) -> None:
        with self._cond:
            if seat in self._seats:
                self._seats.remove(seat)
            seat._pending = None
            self._cond.notify_all()  # with no seat left, the workers end...
            ending = [] if self._seats else list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in ending:  # ...and are waited for: a detector must not be running as the process exits
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _next(self) -> tuple[Seat, Frame, float, bool] | None:
        """The frame to detect next, and whether it must be detected whole: of the seat longest
        overdue for a whole detection, else of the seat served least recently, among those with a
        frame due; None when the last seat has left. Called with the lock held."""
        while self._seats:
            now = time.monotonic()
            due = [seat for seat in self._seats if seat._pending and now >= seat._served + seat._min_period_s]
            if due:
                overdue = [s for s in due if s._cut is not None or now >= s._whole + self._whole_every_s]
                seat = min(overdue, key=lambda s: s._whole) if overdue else min(due, key=lambda s: s._served)
                frame, offered = seat._pending
                seat._pending, seat._served = None, now
                queued = len(due) > 1  # another camera waits for a worker now
                whole = bool(overdue) or not queued or seat._focus is None or not self._whole_every_s
                if whole:
                    self._whole_started(seat, frame, now)
                return seat, frame, now - offered, whole
            waiting = [seat._served + seat._min_period_s - now for seat in self._seats if seat._pending]
            self._cond.wait(min([_POLL_S, *waiting]))
        return None

    @staticmethod
    def _whole_started(seat: Seat, frame: Frame, now: float) -> None:
        seat._whole = now
        if seat._cut is not None and frame.captured >= seat._cut:
            seat._cut = None

    def _work(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: a thread has its own nice value
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + NICE)
        detector: Detector | None = None
        try:
            while True:
                with self._cond:
                    task = self._next()
                if task is None:
                    return
                seat, frame, wait_s, whole = task
                try:
                    if detector is None:
                        detector = self._factory()
                    started = time.monotonic()
                    look = None if whole else seat._focus(frame)
                    if look is not None and not look.complete and not look.faces:
                        look = None  # no face to follow: whole
                    if look is not None:
                        faces, complete = detect_look(detector, frame.pixels, look, self._threshold)
                    else:
                        if not whole:  # the focus has nothing to offer
                            whole = True
                            with self._cond:
                                self._whole_started(seat, frame, started)
                        faces, complete = detector.detect(frame.pixels, self._threshold), True
                    elapsed = time.monotonic() - started
                except Exception as exc:
                    if detector is not None:
                        with contextlib.suppress(Exception):
                            detector.close()
                    detector = None
                    log.debug("detector failed on camera %s: %s", seat.name, redact(str(exc)))
                    seat._on_error(exc, True)
                    time.sleep(_FAILED_PAUSE_S)
                    continue
                DETECTOR_BUSY_SECONDS.inc(elapsed)
                seat._waits.append(wait_s)
                try:
                    seat._on_result(Detection(frame, faces, elapsed, wait_s, whole, complete))
                except Exception as exc:  # the camera's bug: its frames go on being hidden whole meanwhile
                    seat._on_error(exc, False)
        finally:
            if detector is not None:
                detector.close()
