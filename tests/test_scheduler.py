"""The detection scheduler shared by every camera, with detectors of set costs: each frame's first
pixel says how many milliseconds detecting it takes."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest

from streamer.faces.detection import Face
from streamer.faces.focus import Look
from streamer.live.scheduler import Detection, DetectionScheduler
from streamer.live.sources import Frame


class CostlyDetector:
    name = "costly"

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        time.sleep(int(image[0, 0, 0]) / 1000)
        return [Face((1, 1, 5, 5), 0.9)] if image[0, 0, 1] else []

    def close(self) -> None:
        pass


class Camera:
    """Offers a new frame every ``period_s`` (a camera at 1/period_s fps) and counts its detections."""

    def __init__(
        self, scheduler: DetectionScheduler, name: str, cost_ms: int, period_s: float = 0.002, size: int = 4,
        focus: Look | None | bool = False,
    ) -> None:
        self.name, self.period_s = name, period_s
        self.pixels = np.zeros((size, size, 3), np.uint8)
        self.pixels[0, 0, 0] = cost_ms
        self.detected: list[float] = []  # monotonic times of the detections
        self.whole: list[float] = []  # ...of those that looked at the whole frame
        self.errors: list[Exception] = []
        # focus: where to look instead of the whole frame (None: nowhere, look whole); False: no focus at all
        self.seat = scheduler.join(name, self._detection, lambda exc, detector: self.errors.append(exc),
                                   None if focus is False else lambda frame: focus)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._offer, daemon=True)
        self._thread.start()

    def _detection(self, detection: Detection) -> None:
        self.detected.append(time.monotonic())
        if detection.whole:
            self.whole.append(self.detected[-1])

    def _offer(self) -> None:
        index = 0
        while not self._stop.wait(self.period_s):
            self.seat.offer(Frame(self.pixels, time.monotonic(), index))
            index += 1

    def leave(self) -> None:
        self._stop.set()
        self._thread.join()
        self.seat.leave()

    def rate(self, since: float, until: float) -> float:
        return sum(since <= t < until for t in self.detected) / (until - since)


@pytest.fixture
def scheduler():
    return DetectionScheduler(CostlyDetector, threshold=0.5, workers=1)


def test_a_slow_camera_does_not_starve_the_others(scheduler):
    slow, fast = Camera(scheduler, "slow", cost_ms=60), Camera(scheduler, "fast", cost_ms=5)
    started = time.monotonic()
    time.sleep(1.5)
    ended = time.monotonic()  # the fast one goes on alone while the slow one leaves
    slow.leave()
    fast.leave()
    # served in turn: one slow, one fast, ...; with one thread for each camera the fast one would
    # get 12 times as many, and the slow one most of the time
    assert abs(slow.rate(started, ended) - fast.rate(started, ended)) * (ended - started) <= 2
    assert len(fast.detected) >= 15


def test_a_camera_that_leaves_frees_its_share(scheduler):
    first, second = Camera(scheduler, "first", cost_ms=20), Camera(scheduler, "second", cost_ms=20)
    time.sleep(1.0)
    first.leave()
    left = time.monotonic()
    time.sleep(1.0)
    second.leave()
    shared, alone = second.rate(left - 0.8, left), second.rate(left + 0.1, left + 0.9)
    assert 15 <= shared <= 30  # half of the worker's 50 a second (less the threads' own time)
    assert alone >= 1.6 * shared


def test_detect_fps_caps_each_camera():
    scheduler = DetectionScheduler(CostlyDetector, threshold=0.5, workers=1, detect_fps=5)
    cameras = [Camera(scheduler, name, cost_ms=10) for name in ("a", "b")]
    time.sleep(1.3)
    for camera in cameras:
        camera.leave()
    for camera in cameras:  # the worker could do 100 a second
        first = camera.detected[0]
        assert 4 <= camera.rate(first + 0.1, first + 1.1) <= 6.5


def test_one_camera_gets_every_worker():
    scheduler = DetectionScheduler(CostlyDetector, threshold=0.5, workers=2)
    alone = Camera(scheduler, "alone", cost_ms=40)
    time.sleep(1.0)
    alone.leave()
    assert len(alone.detected) >= 35  # two frames at once: ~50 a second, where one thread gets 25


def test_only_the_newest_frame_waits_and_the_others_are_counted_as_dropped(scheduler):
    camera = Camera(scheduler, "busy", cost_ms=50, period_s=0.005)
    time.sleep(0.6)
    camera.leave()
    assert camera.seat.dropped >= 60  # ~120 frames offered, ~12 detected
    assert camera.seat.wait_ms()["p95"] <= 25  # the newest frame: one queued behind another would wait 50 ms


class FailingDetector(CostlyDetector):
    made = Counter()

    def __init__(self) -> None:
        FailingDetector.made["detectors"] += 1

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        raise RuntimeError("model gone")


def test_a_failing_detector_is_reported_to_the_camera_and_made_anew():
    scheduler = DetectionScheduler(FailingDetector, threshold=0.5, workers=1)
    camera = Camera(scheduler, "cam", cost_ms=1)
    time.sleep(2.5)
    camera.leave()
    assert camera.detected == []
    assert 2 <= len(camera.errors) <= 4 and "model gone" in str(camera.errors[0])  # one a second, not a flood
    assert FailingDetector.made["detectors"] == len(camera.errors)


def test_the_threads_end_with_the_last_camera(scheduler):
    camera = Camera(scheduler, "cam", cost_ms=1)
    time.sleep(0.1)
    assert any(t.name.startswith("detector-") for t in threading.enumerate())
    camera.leave()
    deadline = time.monotonic() + 2
    while any(t.name.startswith("detector-") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name.startswith("detector-") for t in threading.enumerate())


class WindowedDetector(CostlyDetector):
    """Whole 400 px frames take 40 ms; the small windows around known faces 2 ms."""

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        time.sleep(0.04 if image.shape[0] >= 400 else 0.002)
        return []


def test_cameras_get_looks_around_their_faces_between_whole_detections():
    scheduler = DetectionScheduler(WindowedDetector, threshold=0.5, workers=1, whole_every_s=0.3)
    look = Look([Face((100, 100, 20, 20), 0.9)])
    cameras = [Camera(scheduler, name, cost_ms=0, size=400, focus=look) for name in ("a", "b")]
    time.sleep(1.5)
    for camera in cameras:
        camera.leave()
    for camera in cameras:
        first = camera.whole[0]
        # whole frames alone: one 40 ms detection after the other, ~12 a second for both
        assert camera.rate(first, first + 1.2) >= 20
        # every camera still gets a whole frame at least every 0.3 s (and a little: the worker may be
        # busy with a detection, then the other camera's overdue whole one, then wake late)
        assert max(np.diff(camera.whole)) <= 0.3 + 2 * 0.04 + 0.1


def test_a_camera_whose_focus_offers_nothing_gets_whole_detections():
    scheduler = DetectionScheduler(WindowedDetector, threshold=0.5, workers=1, whole_every_s=0.3)
    camera = Camera(scheduler, "cam", cost_ms=0, size=400, focus=None)
    time.sleep(1.0)
    camera.leave()
    assert len(camera.detected) >= 15 and camera.whole == camera.detected


def test_queued_cameras_with_no_face_to_follow_and_no_changes_known_get_whole_detections():
    scheduler = DetectionScheduler(WindowedDetector, threshold=0.5, workers=1, whole_every_s=0.3)
    too_much_changed = Look([])  # complete=False: the changes are not known
    cameras = [Camera(scheduler, name, cost_ms=0, size=400, focus=too_much_changed) for name in ("a", "b")]
    time.sleep(1.0)
    for camera in cameras:
        camera.leave()
    for camera in cameras:
        assert len(camera.detected) >= 5 and camera.whole == camera.detected
