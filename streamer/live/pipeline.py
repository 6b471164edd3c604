"""One camera's live pipeline: capture -> detect -> anonymize -> encode.

Capture, anonymize and encode are threads of the camera's own; detection is the process's
``DetectionScheduler``, a pool of detector threads shared by every camera. Capture hands every
frame to the anonymizer through a ``LatestQueue`` and offers the newest to the scheduler: a stage
that falls behind drops frames and counts them, nothing queues without bound. Detections come back
at the pool's pace and feed a ``Tracker``; the anonymizer hides the faces the tracker holds at
each frame's capture time, and the same faces where the ``Follower`` has followed them to.

While cameras queue for the detector, most detections look only around the faces a camera knows
and where its picture changed since its last whole-frame detection (``Changes``; the scheduler
keeps a whole-frame one at least every ``whole_every_s``); capture watches for scene cuts (``SceneCuts``), after which the next detection
is whole and the known faces are forgotten as places to look.

Fail closed: a frame for which the tracker has no answer (no frame detected completely within the
hold time before it, or since a scene cut: the detector is slow, stalled or failing, or has not
started) is hidden whole. No frame reaches the encoder any other way.

A stage that raises is logged with the camera's name, counted (``stage_errors`` in the status,
``streamer_stage_errors_total``) and started again after a short pause; the frame it held is
dropped, never passed on half-done, so a failing anonymizer can only make the output stall.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Callable

import numpy as np

from ..config import AnonymizerSettings, CameraSettings, PipelineSettings, ZoneSettings
from ..faces.anonymizer import Anonymizer, hide_all
from ..faces.focus import Look
from ..faces.zones import ZoneMasks
from ..faces.following import Follower
from ..faces.tracking import Tracker
from . import metrics
from .buffers import LatestQueue
from .changes import Changes
from .hub import FrameHub
from ..redact import redact
from .scenes import SceneCuts
from .scheduler import Detection, DetectionScheduler, Seat
from .sources import Frame, SourceEnded, SourceError, frames, source_kind

log = logging.getLogger("streamer.pipeline")

_POLL_S = 0.25  # how often idle threads look at the stop flag
_RESTART_S = 0.1  # pause before a stage that raised is run again...
_RESTART_MAX_S = 5.0  # ...doubled, up to this, while it fails again within _STEADY_S of a restart
_STEADY_S = 10.0
_STAGES = ("capture", "anonymize", "encode")  # the camera's threads; "detect" is the scheduler's


class CameraState(str, Enum):
    starting = "starting"
    streaming = "streaming"
    reconnecting = "reconnecting"
    ended = "ended"
    stopped = "stopped"


@dataclass(frozen=True, slots=True)
class _Anonymized:
    pixels: np.ndarray
    captured: float
    index: int
    faces: int


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._times.append(now)
            self._trim(now)

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            if len(self._times) < 2:
                return 0.0
            return (len(self._times) - 1) / max(now - self._times[0], 1e-6)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self._window:
            self._times.popleft()


class CameraPipeline:
    def __init__(
        self,
        camera: CameraSettings,
        settings: PipelineSettings,
        anonymizer: AnonymizerSettings,
        detections: DetectionScheduler,
    ) -> None:
        self.camera = camera
        self.name = camera.name
        self.hub = FrameHub(settings.jpeg_quality)
        self._settings = settings
        self._anonymizer = Anonymizer(anonymizer)
        self._detections = detections
        self._seat: Seat | None = None
        self._tracker = Tracker(settings.hold_s)
        self._follower = Follower(settings.follow_s)  # used by the anonymize stage only
        self._changes = Changes()  # set and read by the scheduler's threads
        self._scene = SceneCuts()  # used by the capture stage only
        self._zones = ZoneMasks(camera.zones)
        # Room for the frames that arrive while the anonymizer waits for detection (60 fps at most).
        self._to_anonymize: LatestQueue[Frame] = LatestQueue(2 + math.ceil(settings.detect_wait_s * 60))
        self._to_encode: LatestQueue[_Anonymized] = LatestQueue(2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # "whole": the detections that looked at the whole frame (the others: around known faces)
        self._rates = {stage: RateMeter() for stage in ("capture", "detect", "whole", "output")}
        self._counts = dict.fromkeys(self._rates, 0)
        self.state = CameraState.starting
        self.last_error: str | None = None
        self.detector_error: str | None = None
        self.reconnects = 0
        self.faces = 0
        self.fail_closed = 0
        self.stage_errors = dict.fromkeys(("capture", "detect", "anonymize", "encode"), 0)
        self._latencies: deque[float] = deque(maxlen=300)  # seconds, the newest output frames

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        metrics.FPS.track(self.name, self.fps)
        self._seat = self._detections.join(self.name, self._detected, self._detection_failed, self._look)
        bodies = {
            "capture": self._capture_loop,
            "anonymize": partial(self._consume, self._to_anonymize, self._anonymize),
            "encode": partial(self._consume, self._to_encode, self._encode),
        }
        for stage in _STAGES:
            thread = threading.Thread(
                target=self._supervise, args=(stage, bodies[stage]), name=f"{self.name}-{stage}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _supervise(self, stage: str, body: Callable[[], None]) -> None:
        """Run one stage until the camera stops (or its source ends); restart it whenever it raises.
        A stage that fails on every frame backs off, so it floods neither the CPU nor the log."""
        wait = _RESTART_S / 2
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                body()
                return
            except Exception as exc:
                self._stage_failed(stage, exc)
                wait = min(2 * wait, _RESTART_MAX_S) if time.monotonic() - started < _STEADY_S else _RESTART_S
                self._stop.wait(wait)

    def _stage_failed(self, stage: str, exc: Exception) -> None:
        self.stage_errors[stage] += 1
        self.last_error = f"{stage} stage failed: {_brief(exc)}"
        metrics.STAGE_ERRORS.labels(self.name, stage).inc()
        log.error("camera %s: %s stage failed, restarting it: %s", self.name, stage, _brief(exc))
        log.debug("camera %s: %s stage traceback", self.name, stage, exc_info=True)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._seat is not None:
            self._seat.leave()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.state = CameraState.stopped
        metrics.UP.labels(self.name).set(0)
        metrics.FPS.forget(self.name, self.fps)

    # -- status ----------------------------------------------------------------------------

    def fps(self) -> dict[str, float]:
        """Frames a second over the last seconds, by stage (capture, detect, output; and "whole":
        the detections of whole frames among "detect")."""
        return {stage: round(meter.rate(), 1) for stage, meter in self._rates.items()}

    @property
    def zones(self) -> tuple[ZoneSettings, ...]:
        return self._zones.zones

    def set_zones(self, zones: tuple[ZoneSettings, ...]) -> None:
        """Hide these zones from the next frame on (the anonymize stage reads them per frame)."""
        self._zones = ZoneMasks(zones)

    def status(self) -> dict:
        fps = self.fps()
        return {
            "name": self.name,
            "source": redact(self.camera.source),
            "kind": source_kind(self.camera.source).value,
            "state": self.state.value,
            "fps": fps,
            "frames": dict(self._counts),
            "dropped": {
                "detect": self._seat.dropped if self._seat else 0,
                "anonymize": self._to_anonymize.dropped,
                "encode": self._to_encode.dropped,
            },
            "fail_closed_frames": self.fail_closed,
            "stage_errors": dict(self.stage_errors),
            "faces": self.faces,
            "latency_ms": self.latency_ms(),
            "detect_wait_ms": self._seat.wait_ms() if self._seat else None,
            "reconnects": self.reconnects,
            "viewers": self.hub.viewers,
            "last_error": self.last_error,
            "detector": self._detector_status(),
        }

    def _count(self, stage: str) -> None:
        self._counts[stage] += 1
        self._rates[stage].tick()
        metrics.FRAMES.labels(self.name, stage).inc()

    def latency_ms(self) -> dict[str, float] | None:
        """Capture-to-output latency over the newest output frames: median and 95th percentile."""
        return metrics.percentiles_ms(self._latencies)

    def _detector_status(self) -> str:
        if self.detector_error:
            return self.detector_error
        last = self._tracker.last_detection
        if last is None:
            return "starting"
        age = time.monotonic() - last
        if age > self._settings.hold_s and self.state is CameraState.streaming:
            return f"stalled: newest result is {age:.1f} s old, frames are hidden whole"
        return "ok"

    # -- stages ----------------------------------------------------------------------------

    def _capture_loop(self) -> None:
        backoff = self._settings.reconnect_backoff_s
        attempt = 0
        while not self._stop.is_set():
            try:
                with contextlib.closing(
                    frames(self.camera, self._settings.open_timeout_s, self._settings.read_timeout_s)
                ) as source:
                    for frame in source:
                        if self._stop.is_set():
                            return
                        if self.state is not CameraState.streaming:
                            self.state = CameraState.streaming
                            metrics.UP.labels(self.name).set(1)
                            log.info("camera %s: streaming", self.name)
                        attempt = 0
                        self._count("capture")
                        if self._scene.cut(frame.pixels):
                            self._tracker.cut(frame.captured)
                            if self._seat is not None:
                                self._seat.look_whole(frame.captured)
                        if self._seat is not None and self._seat.offer(frame):
                            metrics.DROPPED.labels(self.name, "detect").inc()
                        if self._to_anonymize.put(frame):
                            metrics.DROPPED.labels(self.name, "anonymize").inc()
            except SourceEnded as exc:
                self.last_error = redact(str(exc))
                self.state = CameraState.ended
                metrics.UP.labels(self.name).set(0)
                log.info("camera %s: %s", self.name, self.last_error)
                return
            except SourceError as exc:
                self.last_error = redact(str(exc))
                log.warning("camera %s: %s", self.name, self.last_error)
            except Exception as exc:  # a bug or a library failure: reopen the source, as for a camera error
                self._stage_failed("capture", exc)
            if self._stop.is_set():
                return
            self.state = CameraState.reconnecting
            metrics.UP.labels(self.name).set(0)
            wait = backoff[min(attempt, len(backoff) - 1)]
            attempt += 1
            self.reconnects += 1
            metrics.RECONNECTS.labels(self.name).inc()
            log.info("camera %s: reconnecting in %g s (attempt %d)", self.name, wait, attempt)
            self._stop.wait(wait)

    def _detected(self, detection: Detection) -> None:
        """A detection from the scheduler (on one of its threads)."""
        if self.detector_error is not None and detection.whole:  # looks may work where whole ones fail
            log.info("camera %s: detector recovered", self.name)
            self.detector_error = None
        frame = detection.frame
        if detection.whole:  # before the tracker: a look after it answers from this frame's changes
            self._changes.detected_whole(frame.pixels, frame.captured, detection.faces)
        self._tracker.update(frame.captured, detection.faces, detection.complete)
        self._count("detect")
        if detection.whole:
            self._count("whole")
        metrics.DETECT_SECONDS.labels(self.name).observe(detection.detect_s)
        metrics.DETECT_WAIT_SECONDS.labels(self.name).observe(detection.wait_s)

    def _look(self, frame: Frame) -> Look | None:
        """Where to look on ``frame`` instead of all of it: around the faces the tracker holds, those
        the follower has moved and those found on the last whole-frame detection, and where the
        picture changed since (incomplete when too much has, before the first whole detection, or
        when the last one is old: whole detections are failing).
        None (look at all of it) after a scene cut not yet detected whole."""
        known = self._tracker.current()
        if known is None:
            return None
        known += self._follower.faces
        changes = self._changes.since(frame.pixels, frame.captured)
        if changes is None:
            return Look(known)
        areas, reference_faces = changes
        return Look(known + reference_faces, areas, complete=True)

    def _detection_failed(self, exc: Exception, detector: bool) -> None:
        """The detector failed on this camera's frame (its frames are hidden whole until one is
        detected again), or handling a detection did (a bug: counted as the detect stage's)."""
        if not detector:
            self._stage_failed("detect", exc)
            return
        if self.detector_error is None:
            log.error("camera %s: detector failed, frames are hidden whole: %s", self.name, exc)
        self.detector_error = f"failing: {exc}"

    def _consume(self, queue: LatestQueue, handle: Callable) -> None:
        while not self._stop.is_set():
            item = queue.get(_POLL_S)
            if item is not None:
                handle(item)

    def _anonymize(self, frame: Frame) -> None:
        # Until this frame (or a later one) is detected, up to detect_wait_s after its capture: then
        # faces are hidden where they were before and after it, not only where they last were.
        self._tracker.wait_for(frame.captured, frame.captured + self._settings.detect_wait_s)
        faces = self._tracker.faces_at(frame.captured)
        followed = self._follower.step(frame.pixels, frame.captured, self._tracker.found_on(frame.captured))
        if faces is None:
            pixels = hide_all(frame.pixels, self._settings.fail_mode)
            self.fail_closed += 1
            metrics.FAIL_CLOSED.labels(self.name).inc()
        else:
            faces += followed
            pixels = self._anonymizer.apply(frame.pixels.copy(), faces)
        pixels = self._zones.apply(pixels)  # last: a zone is hidden whatever came before
        if self._to_encode.put(_Anonymized(pixels, frame.captured, frame.index, len(faces or ()))):
            metrics.DROPPED.labels(self.name, "encode").inc()

    def _encode(self, item: _Anonymized) -> None:
        self.hub.publish(item.pixels, item.captured, item.index)
        latency = time.monotonic() - item.captured
        self._latencies.append(latency)
        self.faces = item.faces
        self._count("output")
        metrics.LATENCY_SECONDS.labels(self.name).observe(latency)
        metrics.FACES.labels(self.name).observe(item.faces)


def _brief(exc: BaseException) -> str:
    """An exception for a log line or the status: its type and the start of its message."""
    text = redact(str(exc))
    return f"{type(exc).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"
