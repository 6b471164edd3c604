"""Prometheus metrics for the live pipeline, labelled by camera (served at ``GET /metrics``)."""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Iterator

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

FRAMES = Counter(
    "streamer_frames_total", "Frames handled, by pipeline stage (whole: detections of whole frames)", ["camera", "stage"]
)
DROPPED = Counter(
    "streamer_frames_dropped_total", "Frames a stage skipped because it was behind, by stage", ["camera", "stage"]
)
FAIL_CLOSED = Counter(
    "streamer_fail_closed_frames_total", "Frames hidden whole because detection was stale or failing", ["camera"]
)


class RateCollector:
    """``streamer_fps``: each running camera's rates per stage, read from its meters when Prometheus
    scrapes (a gauge set as a side effect of something else would show the rate of whenever that
    last ran)."""

    _NAME, _HELP = "streamer_fps", "Frames per second over the last seconds, by stage"

    def __init__(self) -> None:
        self._cameras: dict[str, Callable[[], dict[str, float]]] = {}
        self._lock = threading.Lock()

    def track(self, camera: str, rates: Callable[[], dict[str, float]]) -> None:
        with self._lock:
            self._cameras[camera] = rates

    def forget(self, camera: str, rates: Callable[[], dict[str, float]]) -> None:
        """Stop reading ``rates``, unless a newer camera of that name has replaced them."""
        with self._lock:
            if self._cameras.get(camera) == rates:
                del self._cameras[camera]

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self._NAME, self._HELP, labels=["camera", "stage"])]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._NAME, self._HELP, labels=["camera", "stage"])
        with self._lock:
            cameras = list(self._cameras.items())
        for camera, rates in cameras:
            for stage, value in rates().items():
                family.add_metric([camera, stage], value)
        yield family


def percentiles_ms(seconds: Iterable[float]) -> dict[str, float] | None:
    """Median and 95th percentile of durations in seconds, in ms; None for none."""
    samples = list(seconds)
    if not samples:
        return None
    p50, p95 = np.percentile(samples, [50, 95])
    return {"p50": round(p50 * 1000, 1), "p95": round(p95 * 1000, 1)}


FPS = RateCollector()
REGISTRY.register(FPS)
DETECT_SECONDS = Histogram(
    "streamer_detector_seconds", "Detector inference time per frame", ["camera"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
DETECTOR_BUSY_SECONDS = Counter(
    "streamer_detector_busy_seconds", "Time the shared detector threads spent detecting, all cameras (rate / threads = load)",
)
DETECT_WAIT_SECONDS = Histogram(
    "streamer_detect_wait_seconds", "Time a frame offered for detection waited for a detector thread", ["camera"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
LATENCY_SECONDS = Histogram(
    "streamer_capture_to_output_seconds", "From a frame's capture to its publication, anonymized, in the hub", ["camera"],
    buckets=(0.01, 0.02, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0),
)
FACES = Histogram(
    "streamer_faces_per_frame", "Faces hidden in each output frame", ["camera"],
    buckets=(0, 1, 2, 3, 5, 10, 20, 50),
)
STAGE_ERRORS = Counter(
    "streamer_stage_errors_total", "Times a pipeline stage raised and was restarted, by stage", ["camera", "stage"]
)
RECONNECTS = Counter("streamer_reconnects_total", "Times a source was reopened", ["camera"])
VIEWERS = Gauge("streamer_viewers", "Open MJPEG streams", ["camera"])
UP = Gauge("streamer_camera_up", "1 while the camera delivers frames", ["camera"])
