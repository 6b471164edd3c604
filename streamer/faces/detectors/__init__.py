"""Detector backends, chosen by name in ``detector.backend`` (or through ``detector.profile``)."""

from __future__ import annotations

from typing import Callable

from ...config import DetectorSettings
from ...offline import quiet_dependencies
from ..detection import Detector


def _blazeface(settings: DetectorSettings) -> Detector:
    from .blazeface import BlazeFaceFullRange

    return BlazeFaceFullRange()


def _centerface(settings: DetectorSettings) -> Detector:
    from ...models import centerface_path
    from .centerface import CenterFace

    return CenterFace(
        centerface_path(settings.model_dir),
        scale=settings.scale,
        threads=settings.threads,
        max_pixels=settings.max_pixels,
        int8=settings.int8,
        coarse_pixels=settings.coarse_pixels,
        coarse_threshold=settings.coarse_threshold,
    )


BACKENDS: dict[str, Callable[[DetectorSettings], Detector]] = {
    "mediapipe": _blazeface,
    "centerface": _centerface,
}


def create_detector(settings: DetectorSettings) -> Detector:
    """A new detector for one thread; raises ``ValueError`` naming the known backends, and
    ``streamer.models.ModelError`` when a backend's prepared model is missing."""
    quiet_dependencies()  # before a backend imports onnxruntime or mediapipe
    try:
        factory = BACKENDS[settings.backend]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"detector.backend: unknown backend {settings.backend!r} (known: {known})") from None
    return factory(settings)
