import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from streamer.config import ImageSettings
from streamer.stills.images import ImageError, ImageTooLarge, UnsupportedImage, decode, encode

LIMITS = ImageSettings()


def jpeg_with_exif(pixels: np.ndarray, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}  # GPS
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


def asymmetric_image() -> np.ndarray:
    pixels = np.zeros((60, 100, 3), dtype=np.uint8)
    pixels[:20, :30] = (255, 0, 0)
    pixels[40:, 70:] = (0, 0, 255)
    return pixels


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(orientation):
    data = jpeg_with_exif(asymmetric_image(), orientation)
    pixels, fmt = decode(data, LIMITS)
    from PIL import ImageOps

    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert fmt == "jpeg"
    assert pixels.shape == expected.shape
    assert np.abs(pixels.astype(int) - expected.astype(int)).mean() < 2


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_encoded_output_has_no_metadata(fmt):
    pixels, _ = decode(jpeg_with_exif(asymmetric_image(), 6), LIMITS)
    out = Image.open(io.BytesIO(encode(pixels, fmt, LIMITS)))
    assert out.format == fmt.upper()
    assert not out.getexif()
    assert "icc_profile" not in out.info and "xmp" not in out.info


def test_png_alpha_survives_a_round_trip():
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 3] = 200
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    pixels, fmt = decode(buf.getvalue(), LIMITS)
    assert fmt == "png" and pixels.shape == (10, 10, 4)
    again, _ = decode(encode(pixels, "png", LIMITS), LIMITS)
    assert (again[..., 3] == 200).all()


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height``: decoding it in full would need gigabytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_from_its_header():
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode(png_bomb(60000, 60000), LIMITS)


def test_bad_inputs_raise_the_right_error():
    with pytest.raises(ImageError, match="empty"):
        decode(b"", LIMITS)
    with pytest.raises(ImageError):
        decode(b"this is not an image", LIMITS)
    with pytest.raises(UnsupportedImage):
        decode(b"GIF89a" + b"\0" * 100, LIMITS)
    with pytest.raises(ImageTooLarge):
        decode(b"\xff\xd8\xff" + b"\0" * 100, ImageSettings(max_bytes=50))
    with pytest.raises(ImageError):
        decode(jpeg_with_exif(asymmetric_image())[:200], LIMITS)
