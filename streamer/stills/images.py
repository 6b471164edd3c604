"""Still-image decoding and encoding with limits, for untrusted uploads.

Decoding checks the byte size, then the pixel count from the header alone (so a decompression
bomb is refused before it is expanded), and applies the EXIF orientation. Encoding writes pixels
only: no EXIF, GPS, XMP or ICC block from the input reaches the output.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import ImageSettings

FORMATS = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
EXTENSIONS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}

_EXIF_ORIENTATION = 0x0112
# Other image formats we recognise only to answer "unsupported" rather than "broken".
_OTHER_MAGIC = (b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x01\x00")

# EXIF orientation -> the transform that makes the stored pixels upright (as Pillow does).
_ORIENT = {
    2: lambda p: p[:, ::-1],
    3: lambda p: p[::-1, ::-1],
    4: lambda p: p[::-1],
    5: lambda p: p.transpose(1, 0, 2),
    6: lambda p: np.rot90(p, -1),
    7: lambda p: p.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda p: np.rot90(p, 1),
}


class ImageError(ValueError):
    """An image we will not process; ``status`` is the HTTP status that describes why."""

    status = 400
    code = "invalid_image"


class UnsupportedImage(ImageError):
    status = 415
    code = "unsupported_media_type"


class ImageTooLarge(ImageError):
    status = 413
    code = "too_large"


def sniff_format(data: bytes) -> str | None:
    """``jpeg``, ``png`` or ``webp`` from the leading bytes, else None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def decode(data: bytes, limits: ImageSettings) -> tuple[np.ndarray, str]:
    """RGB (or RGBA for PNG/WebP with alpha) ``uint8`` pixels, upright, and the format name."""
    if not data:
        raise ImageError("the image is empty")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"the image is {len(data)} bytes; the limit is {limits.max_bytes}")
    fmt = sniff_format(data)
    if fmt is None:
        if data.startswith(_OTHER_MAGIC):
            raise UnsupportedImage("only JPEG, PNG and WebP images are supported")
        raise ImageError("the data is not a JPEG, PNG or WebP image")
    try:
        with warnings.catch_warnings():
            # We apply our own pixel limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            header = Image.open(io.BytesIO(data), formats=[fmt.upper()])
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image has too many pixels: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"the {fmt.upper()} header cannot be read: {exc}") from None
    width, height = header.size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(f"the image is {width}x{height} pixels; the limit is {limits.max_pixels} pixels")
    if width == 0 or height == 0:
        raise ImageError("the image has no pixels")
    if getattr(header, "n_frames", 1) > 1:  # APNG, animated WebP: the other frames would be lost
        raise UnsupportedImage("animated images are not supported: send one frame, or the frames as a video file")
    try:
        if fmt == "jpeg" and header.mode in ("RGB", "L"):
            pixels = _orient(simplejpeg.decode_jpeg(data, colorspace="RGB"), header)
        else:
            pixels = _decode_with_pillow(header)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"the {fmt.upper()} data cannot be decoded: {exc}") from None
    return pixels, fmt


def _decode_with_pillow(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    return np.asarray(image.convert("RGBA" if has_alpha else "RGB"))


def _orient(pixels: np.ndarray, header: Image.Image) -> np.ndarray:
    """Apply the EXIF orientation tag (1-8) the way viewers do, so faces are upright."""
    orientation = header.getexif().get(_EXIF_ORIENTATION, 1)
    op = _ORIENT.get(orientation)
    return np.ascontiguousarray(op(pixels)) if op else pixels


def encode(pixels: np.ndarray, fmt: str, settings: ImageSettings) -> bytes:
    """Encode RGB/RGBA pixels as ``fmt`` with no metadata at all."""
    if fmt == "jpeg":
        rgb = np.ascontiguousarray(pixels[:, :, :3])
        return simplejpeg.encode_jpeg(rgb, quality=settings.jpeg_quality, colorspace="RGB", colorsubsampling="420")
    code = cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR
    bgr = cv2.cvtColor(pixels, code)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    elif fmt == "webp":
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, settings.webp_quality])
    else:
        raise UnsupportedImage(f"cannot encode {fmt!r}")
    if not ok:
        raise ImageError(f"{fmt} encoding failed")
    return buf.tobytes()
