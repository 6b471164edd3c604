"""Prometheus metrics for the live pipeline, labelled by camera (served at ``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FRAMES = Counter("streamer_frames_total", "Frames handled, by pipeline stage", ["camera", "stage"])
DROPPED = Counter(
    "streamer_frames_dropped_total", "Frames a stage skipped because it was behind, by stage", ["camera", "stage"]
)
FAIL_CLOSED = Counter(
    "streamer_fail_closed_frames_total", "Frames hidden whole because detection was stale or failing", ["camera"]
)
FPS = Gauge("streamer_fps", "Frames per second over the last seconds, by stage", ["camera", "stage"])
DETECT_SECONDS = Histogram(
    "streamer_detector_seconds", "Detector inference time per frame", ["camera"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
LATENCY_SECONDS = Histogram(
    "streamer_capture_to_output_seconds", "From a frame's capture to its anonymized JPEG", ["camera"],
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
