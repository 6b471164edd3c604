"""A bounded pool of CPU threads for request work, each thread with its own detector.

Admission is counted, not queued without end: a new job is refused at once when ``workers +
queue_size`` jobs are in flight, or when the jobs ahead of it would keep it waiting longer than
``max_wait_s`` (predicted from how long recent jobs took, so a slow detector's queue stays short
without a per-profile queue size); a job that still waited twice that long (the prediction was
wrong: jobs suddenly slower, or a stalled detector) is dropped before it runs. All surface as
``Overloaded`` so the API can answer 503 with ``Retry-After``.

A job whose client has gone away is not run: ``run`` takes ``gone``, a callable whose awaitable completes
when the client disconnects; a job still waiting for a thread is then cancelled, and a running one is
told to stop (``Stop``) and does so at its next stage. Both surface as ``Abandoned``.

Threads rather than processes: every stage of a still-image job (libjpeg-turbo, OpenCV, MediaPipe,
onnxruntime) releases the GIL, so one thread per core keeps every core busy without copying
images between processes.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from ..config import DetectorSettings
from ..faces.detection import Detector
from ..faces.detectors import create_detector

T = TypeVar("T")
# Weight of the newest job in the running mean of job times: about the last 10 jobs count.
_JOB_TIME_WEIGHT = 0.1
# A job admitted with a predicted wait within max_wait_s is dropped only once it has waited this
# many times as long: waits scatter around the prediction, and a job dropped after waiting about
# as long as allowed would waste that wait (a late 503 instead of a slightly late answer).
_EXPIRY_FACTOR = 2.0


class Overloaded(Exception):
    """The pool cannot take or finish this job in time; retry after ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Abandoned(Exception):
    """The job was dropped (before or while running) because nobody waits for its answer."""


class Stop(threading.Event):
    """Set when a job's client has gone away; a job calls ``check()`` between its stages."""

    def check(self) -> None:
        if self.is_set():
            raise Abandoned("the client went away")


@dataclass(frozen=True, slots=True)
class PoolStats:
    workers: int
    capacity: int
    in_flight: int
    done: int  # ran to the end (with an answer or an image error)
    rejected: int  # refused at admission: the pool was full, or the predicted wait too long
    expired: int  # waited over twice max_wait_s for a thread
    abandoned: int  # client gone: dropped from the queue, or told to stop at its next stage
    job_s: float | None  # running mean of recent jobs' run times

    def as_json(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


def cpu_count() -> int:
    """Cores this process may run on (honours affinity and container CPU sets)."""
    return len(os.sched_getaffinity(0))


class WorkerPool:
    def __init__(self, detector: DetectorSettings, workers: int, queue_size: int, max_wait_s: float) -> None:
        self.workers = workers or cpu_count()
        self._detector_settings = detector
        self.capacity = self.workers + queue_size
        self._max_wait_s = max_wait_s
        self._in_flight = 0
        self._job_s: float | None = None  # running mean of recent jobs' run times
        self._counts = {"done": 0, "rejected": 0, "expired": 0, "abandoned": 0}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._detectors: list[Detector] = []
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="streamer-cpu")

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def predicted_wait(self) -> float:
        """Seconds a job submitted now would wait for a thread, from the jobs ahead of it and the
        mean time of recent jobs (0 while a thread is free or before any job has finished)."""
        ahead = self._in_flight - self.workers + 1
        if ahead <= 0 or self._job_s is None:
            return 0.0
        return ahead * self._job_s / self.workers

    def refusal(self) -> Overloaded | None:
        """The error for a job submitted now, counted as rejected, or None when it may come in
        (checked before reading a body too, so that a request past capacity is answered unread)."""
        with self._lock:
            return self._refusal_locked()

    def _refusal_locked(self) -> Overloaded | None:
        wait = self.predicted_wait()
        if self._in_flight >= self.capacity:
            reason = f"all {self.workers} workers are busy and {self.capacity - self.workers} requests wait"
        elif wait > self._max_wait_s:
            reason = f"a new request would wait about {wait:.1f} s for a worker (limit {self._max_wait_s:g} s)"
        else:
            return None
        self._counts["rejected"] += 1
        return Overloaded(reason, retry_after=max(1, math.ceil(wait)))

    def refuse(self, reason: str) -> Overloaded:
        """The error for a job refused at admission for ``reason``, counted as rejected."""
        with self._lock:
            self._counts["rejected"] += 1
        return Overloaded(reason, retry_after=max(1, math.ceil(self.predicted_wait())))

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(self.workers, self.capacity, self._in_flight, **self._counts, job_s=self._job_s)

    def warm_up(self) -> None:
        """Load one detector in every worker thread, so the first requests do not pay for it."""
        barrier = threading.Barrier(self.workers)

        def load() -> None:
            self._detector()
            barrier.wait(timeout=120)

        for future in [self._executor.submit(load) for _ in range(self.workers)]:
            future.result()

    async def run(
        self, job: Callable[[Detector, Stop], T], gone: Callable[[], Awaitable[Any]] | None = None
    ) -> T:
        """Run ``job(detector, stop)`` on a worker thread.

        Raises ``Overloaded`` when the pool is full or the job waited too long for a thread, and
        ``Abandoned`` when the awaitable ``gone()`` (if given) completes first: the job is then
        cancelled if it has not started, or ``stop`` is set so that it ends at its next
        ``stop.check()``. Cancelling the caller does the same.
        """
        stop = Stop()
        future = self.submit(job, stop)
        answer = asyncio.wrap_future(future)
        watcher = asyncio.ensure_future(gone()) if gone is not None else None
        try:
            if watcher is not None:
                await asyncio.wait((answer, watcher), return_when=asyncio.FIRST_COMPLETED)
                if not answer.done():
                    raise Abandoned("the client went away")
            return await answer
        except (Abandoned, asyncio.CancelledError):
            stop.set()
            future.cancel()  # only succeeds while the job waits for a thread
            answer.cancel()
            with self._lock:
                self._counts["abandoned"] += 1
            raise
        finally:
            if watcher is not None:
                watcher.cancel()

    def submit(self, job: Callable[[Detector, Stop], T], stop: Stop | None = None) -> Future[T]:
        """Queue ``job(detector, stop)`` for a worker thread and return its future (for callers
        without an event loop, such as the command line); raises ``Overloaded`` as ``run`` does."""
        with self._lock:
            error = self._refusal_locked()
            if error is None:
                self._in_flight += 1
        if error is not None:
            raise error
        future: Future[T] = self._executor.submit(self._call, job, stop or Stop(), time.monotonic())
        future.add_done_callback(self._release)
        return future

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        for detector in self._detectors:
            detector.close()

    def _call(self, job: Callable[[Detector, Stop], T], stop: Stop, submitted: float) -> T:
        waited = time.monotonic() - submitted
        if waited > self._max_wait_s * _EXPIRY_FACTOR:
            raise Overloaded(
                f"the request waited {waited:.1f} s for a worker (over twice the limit of {self._max_wait_s:g} s)"
            )
        stop.check()
        started = time.monotonic()
        try:
            return job(self._detector(), stop)
        finally:
            if not stop.is_set():  # a job stopped early says nothing about how long jobs take
                self._record(time.monotonic() - started)

    def _record(self, seconds: float) -> None:
        with self._lock:
            mean = self._job_s
            self._job_s = seconds if mean is None else mean + _JOB_TIME_WEIGHT * (seconds - mean)

    def _release(self, future: Future) -> None:
        error = None if future.cancelled() else future.exception()
        # An abandoned job (cancelled, or stopped at a stage) was counted when its client went.
        outcome = (
            None if future.cancelled() or isinstance(error, Abandoned)
            else "expired" if isinstance(error, Overloaded)
            else "done"
        )
        with self._lock:
            self._in_flight -= 1
            if outcome:
                self._counts[outcome] += 1

    def _detector(self) -> Detector:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = create_detector(self._detector_settings)
            with self._lock:
                self._detectors.append(detector)
        return detector
