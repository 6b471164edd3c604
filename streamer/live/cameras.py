"""The set of live cameras the server runs, each with its own pipeline and detector."""

from __future__ import annotations

import logging
from functools import partial

from ..config import Settings
from ..faces.detectors import create_detector
from .pipeline import CameraPipeline

log = logging.getLogger("streamer.cameras")


class CameraNotFound(LookupError):
    """No camera of that name; the API answers 404."""


class Cameras:
    def __init__(self, settings: Settings) -> None:
        self._pipelines = {
            camera.name: CameraPipeline(
                camera,
                settings.pipeline,
                settings.anonymizer,
                partial(create_detector, settings.pipeline.detector),
                settings.pipeline.detector.threshold,
            )
            for camera in settings.cameras
            if camera.enabled
        }

    def __iter__(self):
        return iter(self._pipelines.values())

    def get(self, name: str) -> CameraPipeline:
        """The camera's pipeline; raises ``CameraNotFound``."""
        try:
            return self._pipelines[name]
        except KeyError:
            raise CameraNotFound(f"no camera named {name!r}") from None

    def start(self) -> None:
        for pipeline in self._pipelines.values():
            pipeline.start()
        if self._pipelines:
            log.info("cameras started: %s", ", ".join(self._pipelines))

    def stop(self) -> None:
        for pipeline in self._pipelines.values():
            pipeline.stop()
