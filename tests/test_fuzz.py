"""Fuzzing: the HTTP API from its own OpenAPI schema (schemathesis) and the image decoders from
mutated real images (hypothesis). Short here; ``bench/fuzz.py`` runs the same tests for longer.

What must hold, whatever comes in: no 5xx but the ones the API documents (503 when busy or
before a camera's first frame), every error in the ``{"error", "detail"}`` envelope, and a decoder
that either gives upright pixels within the limits or raises ``ImageError``.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from streamer.config import ImageSettings
from streamer.stills.images import ImageError, decode

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))  # per API operation, and per decoder test
LIMITS = ImageSettings(max_pixels=4_000_000)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@schemathesis.serializer("application/sdp")
def sdp_text(_context, value) -> bytes:
    """WHEP offers: the generated string, sent as it is."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)


@pytest.fixture(scope="module")
def api_schema(start_server, tmp_path_factory):
    server = start_server(
        {"STREAMER_PIPELINE__ZONES_FILE": str(tmp_path_factory.mktemp("fuzz") / "zones.yaml"),
         "STREAMER_DETECTOR__PROFILE": "fast", "STREAMER_PIPELINE__DETECTOR__PROFILE": "fast",
         "STREAMER_SERVER__WORKERS": "1", "STREAMER_WEBRTC__HOST_ADDRESSES": "[127.0.0.1]",
         "STREAMER_WEBRTC__CONNECT_TIMEOUT_S": "1"},
        ["--camera", "cam=pattern://160x90@5"],
    )
    # An endless MJPEG stream has no answer to check; it is tested in test_live and test_hostile.
    return schemathesis.openapi.from_url(server.url + "/openapi.json").exclude(path_regex="stream\\.mjpeg$")


def test_the_api_answers_anything_its_schema_allows_without_a_crash(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy())
        def answers(case) -> None:
            reply = case.call(timeout=30)
            assert reply.status_code not in (500, 501, 502, 504), (operation.label, reply.text[:500])
            if reply.status_code >= 400 and reply.status_code != 499:
                assert set(reply.json()) == {"error", "detail"}, (operation.label, reply.text[:500])

        answers()


def image_bytes(fmt: str, mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(7).integers(0, 256, (24, 32, len(mode)), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels if len(mode) > 1 else pixels[..., 0], mode).save(out, fmt)
    return out.getvalue()


SEEDS = [image_bytes("JPEG"), image_bytes("PNG"), image_bytes("PNG", "RGBA"), image_bytes("WEBP"),
         image_bytes("JPEG", "L")]


@st.composite
def mutated_images(draw) -> bytes:
    """A real small image with some bytes changed, cut short or grown."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(8, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=64))


def decodes_or_refuses(data: bytes) -> None:
    try:
        pixels, fmt = decode(data, LIMITS)
    except ImageError:
        return
    assert fmt in ("jpeg", "png", "webp")
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert 0 < pixels.shape[0] * pixels.shape[1] <= LIMITS.max_pixels


@FUZZ
@given(mutated_images())
def test_a_mutated_image_decodes_or_gets_an_image_error(data):
    decodes_or_refuses(data)


@FUZZ
@given(st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP"]), st.binary(max_size=2048))
def test_a_real_signature_before_random_bytes_gets_an_image_error(signature, rest):
    decodes_or_refuses(signature + rest)
