"""The set of live cameras the server runs, by name, each with its own pipeline and detector.

The registry knows a camera only as a ``Camera``: its name, state, status and hub of anonymized
frames. It imports no pipeline, so the HTTP side can use it without importing the modules that
hold raw frames; ``streamer.server`` builds the pipelines and hands them in.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Iterable, Iterator, Mapping, Protocol

from ..config import ZoneSettings
from .hub import FrameHub

log = logging.getLogger("streamer.cameras")


class CameraNotFound(LookupError):
    """No camera of that name; the API answers 404."""


class Camera(Protocol):
    """A live camera as seen from outside ``streamer.live`` (a ``pipeline.CameraPipeline``)."""

    name: str
    hub: FrameHub  # its anonymized frames: the only frames that leave the pipeline

    @property
    def state(self) -> Enum: ...

    def status(self) -> dict: ...

    @property
    def zones(self) -> tuple[ZoneSettings, ...]: ...

    def set_zones(self, zones: tuple[ZoneSettings, ...]) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Cameras:
    def __init__(self, cameras: Iterable[Camera], elsewhere: Mapping[str, str] | None = None) -> None:
        """``elsewhere``: where the cameras that other servers run are, by name (said in the 404)."""
        self._pipelines = {camera.name: camera for camera in cameras}
        self._elsewhere = dict(elsewhere or {})

    def __iter__(self) -> Iterator[Camera]:
        return iter(self._pipelines.values())

    def get(self, name: str) -> Camera:
        """The camera's pipeline; raises ``CameraNotFound``."""
        try:
            return self._pipelines[name]
        except KeyError:
            where = self._elsewhere.get(name)
            raise CameraNotFound(f"camera {name!r} runs on {where}" if where else f"no camera named {name!r}") from None

    def start(self) -> None:
        for pipeline in self._pipelines.values():
            pipeline.start()
        if self._pipelines:
            log.info("cameras started: %s", ", ".join(self._pipelines))

    def stop(self) -> None:
        for pipeline in self._pipelines.values():
            pipeline.stop()
