"""The still-image job shared by the HTTP API and the CLI: decode, detect, anonymize, encode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config import AnonymizerSettings, ImageSettings
from ..faces.anonymizer import Anonymizer
from ..faces.detection import Detector, Face
from .images import decode, encode


@dataclass(frozen=True, slots=True)
class Detected:
    width: int
    height: int
    faces: list[Face]

    def as_json(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "faces": [{"box": [round(v, 1) for v in f.box], "score": round(f.score, 4)} for f in self.faces],
        }


@dataclass(frozen=True, slots=True)
class Anonymized:
    data: bytes
    format: str
    faces: list[Face]


def _go_on() -> None:
    pass


def detect_image(
    data: bytes, detector: Detector, threshold: float, image: ImageSettings, check: Callable[[], None] = _go_on
) -> Detected:
    """The faces in an image. ``check`` runs between stages and may raise to stop the job (the
    HTTP API stops a job whose client has gone away)."""
    pixels, _ = decode(data, image)
    check()
    return Detected(pixels.shape[1], pixels.shape[0], detector.detect(pixels, threshold))


def anonymize_image(
    data: bytes,
    detector: Detector,
    threshold: float,
    anonymizer: AnonymizerSettings,
    image: ImageSettings,
    check: Callable[[], None] = _go_on,
) -> Anonymized:
    """The image with its faces hidden, re-encoded in its own format with no metadata; ``check``
    as for ``detect_image``."""
    pixels, fmt = decode(data, image)
    check()
    faces = detector.detect(pixels, threshold)
    check()
    if not pixels.flags.writeable:
        pixels = pixels.copy()
    Anonymizer(anonymizer).apply(pixels, faces)
    check()
    return Anonymized(encode(pixels, fmt, image), fmt, faces)
