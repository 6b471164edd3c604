"""A bounded pool of CPU threads for request work, each thread with its own detector.

Admission is counted, not queued without end: past ``workers + queue_size`` jobs in flight a new
job is refused at once, and a job that waited longer than ``max_wait_s`` for a thread is dropped
before it runs. Both surface as ``Overloaded`` so the API can answer 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

from .config import DetectorSettings
from .detection import Detector
from .detectors import create_detector

T = TypeVar("T")


class Overloaded(Exception):
    """The pool cannot take or finish this job in time; retry after ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def cpu_count() -> int:
    """Cores this process may run on (honours affinity and container CPU sets)."""
    return len(os.sched_getaffinity(0))


class WorkerPool:
    def __init__(self, detector: DetectorSettings, workers: int, queue_size: int, max_wait_s: float) -> None:
        self.workers = workers or cpu_count()
        self._detector_settings = detector
        self._capacity = self.workers + queue_size
        self._max_wait_s = max_wait_s
        self._in_flight = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._detectors: list[Detector] = []
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="streamer-cpu")

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def warm_up(self) -> None:
        """Load one detector in every worker thread, so the first requests do not pay for it."""
        barrier = threading.Barrier(self.workers)

        def load() -> None:
            self._detector()
            barrier.wait(timeout=120)

        for future in [self._executor.submit(load) for _ in range(self.workers)]:
            future.result()

    async def run(self, job: Callable[[Detector], T]) -> T:
        """Run ``job(detector)`` on a worker thread; raises ``Overloaded`` when full or too late."""
        with self._lock:
            if self._in_flight >= self._capacity:
                raise Overloaded(f"all {self.workers} workers are busy and {self._capacity - self.workers} requests wait")
            self._in_flight += 1
        future: Future[T] = self._executor.submit(self._call, job, time.monotonic())
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        for detector in self._detectors:
            detector.close()

    def _call(self, job: Callable[[Detector], T], submitted: float) -> T:
        waited = time.monotonic() - submitted
        if waited > self._max_wait_s:
            raise Overloaded(f"the request waited {waited:.1f} s for a worker (limit {self._max_wait_s} s)")
        return job(self._detector())

    def _release(self, _future: Future) -> None:
        with self._lock:
            self._in_flight -= 1

    def _detector(self) -> Detector:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = create_detector(self._detector_settings)
            with self._lock:
                self._detectors.append(detector)
        return detector
