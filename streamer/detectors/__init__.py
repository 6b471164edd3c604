"""Detector backends, chosen by name in ``detector.backend``."""

from __future__ import annotations

from typing import Callable

from ..config import DetectorSettings
from ..detection import Detector


def _blazeface() -> Detector:
    from .blazeface import BlazeFaceFullRange

    return BlazeFaceFullRange()


BACKENDS: dict[str, Callable[[], Detector]] = {
    "mediapipe": _blazeface,
}


def create_detector(settings: DetectorSettings) -> Detector:
    """A new detector for one thread; raises ``ValueError`` naming the known backends."""
    try:
        factory = BACKENDS[settings.backend]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"detector.backend: unknown backend {settings.backend!r} (known: {known})") from None
    return factory()
