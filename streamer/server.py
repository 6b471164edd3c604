"""The server that ``streamer serve`` runs: the HTTP app over a pipeline for each live camera.

This is where the two sides meet. ``streamer.live`` builds the pipelines, which alone hold raw
camera frames; ``streamer.http`` gets them as ``live.cameras.Cameras``, a registry of names,
status and hubs of anonymized frames, and imports neither ``live.sources`` nor ``live.pipeline``
(the import contract in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from .config import Settings
from .http.app import build_app
from .live.cameras import Cameras
from .live.pipeline import CameraPipeline
from .live.scheduler import DetectionScheduler
from .shards import camera_map
from .zones import ZonesFile


def create_app(settings: Settings) -> FastAPI:
    """The app; with ``server.shard`` set it runs only the cameras of that shard (``streamer.shards``)."""
    placed = camera_map(settings)
    local = {p.name for p in placed if p.local}
    elsewhere = {p.name: f"shard {p.shard}" + (f", {p.url}" if p.url else "") for p in placed if not p.local}
    drawn = ZonesFile(Path(settings.pipeline.zones_file)).load()  # ConfigError stops the start
    detections = DetectionScheduler.for_pipeline(settings.pipeline)
    pipelines = (
        CameraPipeline(
            camera.model_copy(update={"zones": drawn[camera.name]}) if camera.name in drawn else camera,
            settings.pipeline,
            settings.anonymizer,
            detections,
        )
        for camera in settings.cameras
        if camera.name in local
    )
    return build_app(settings, Cameras(pipelines, elsewhere))
