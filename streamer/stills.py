"""The still-image job shared by the HTTP API and the CLI: decode, detect, anonymize, encode."""

from __future__ import annotations

from dataclasses import dataclass

from .anonymize import Anonymizer
from .config import AnonymizerSettings, ImageSettings
from .detection import Detector, Face
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


def detect_image(data: bytes, detector: Detector, threshold: float, image: ImageSettings) -> Detected:
    pixels, _ = decode(data, image)
    return Detected(pixels.shape[1], pixels.shape[0], detector.detect(pixels, threshold))


def anonymize_image(
    data: bytes,
    detector: Detector,
    threshold: float,
    anonymizer: AnonymizerSettings,
    image: ImageSettings,
) -> Anonymized:
    """The image with its faces hidden, re-encoded in its own format with no metadata."""
    pixels, fmt = decode(data, image)
    faces = detector.detect(pixels, threshold)
    if not pixels.flags.writeable:
        pixels = pixels.copy()
    Anonymizer(anonymizer).apply(pixels, faces)
    return Anonymized(encode(pixels, fmt, image), fmt, faces)
