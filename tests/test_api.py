"""The HTTP API, over real HTTP on loopback, against ``streamer serve`` in its own process."""

import asyncio
import io
import socket
import struct

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import FACES_DEV, read_rgb
from imaging import crop, detail_kept
from streamer.config import AnonymizerSettings, Shape, load_settings
from streamer.server import create_app
from streamer.faces.anonymizer import coverage_mask
from streamer.faces.detection import Face, iou
from test_images import jpeg_with_exif, png_bomb


def png_bytes(pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    return buf.tobytes()


def decode_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def photo(easy_images):
    entry = easy_images[0]
    return entry, read_rgb(entry)


def test_multipart_png_comes_back_with_faces_hidden_and_the_rest_unchanged(server, photo):
    entry, pixels = photo
    reply = httpx.post(
        server.url + "/v1/anonymize", files={"file": ("photo.png", png_bytes(pixels), "image/png")}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/png"
    found = int(reply.headers["x-faces-detected"])
    assert found >= len(entry["faces"])
    out = decode_rgb(reply.content)
    for truth in entry["faces"]:
        assert detail_kept(crop(pixels, truth), crop(out, truth)) < 0.2
    # Outside every hidden region the PNG is bit-for-bit the input.
    detected = httpx.post(server.url + "/v1/detect", content=png_bytes(pixels), headers={"content-type": "image/png"})
    faces = [Face(tuple(f["box"]), f["score"]) for f in detected.json()["faces"]]
    hidden = coverage_mask(faces, pixels.shape[1], pixels.shape[0], AnonymizerSettings(shape=Shape.box))
    # Boxes in the JSON are rounded to 0.1 px: allow a one-pixel rim around each region.
    rim = cv2.dilate(hidden.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.array_equal(out[~rim], pixels[~rim])


def test_raw_jpeg_body_gets_a_jpeg_back(server, photo):
    entry, _ = photo
    data = (FACES_DEV / entry["file"]).read_bytes()
    reply = httpx.post(server.url + "/v1/anonymize", content=data, headers={"content-type": "image/jpeg"}, timeout=30)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "image/jpeg"
    out, original = decode_rgb(reply.content), decode_rgb(data)
    assert out.shape == original.shape
    for truth in entry["faces"]:
        assert detail_kept(crop(original, truth), crop(out, truth)) < 0.2


def test_query_parameters_override_the_mode_and_shape(server, photo):
    entry, pixels = photo
    reply = httpx.post(
        server.url + "/v1/anonymize",
        params={"mode": "fill", "shape": "box", "padding": 1.5},
        content=png_bytes(pixels),
        headers={"content-type": "image/png"},
    )
    assert reply.status_code == 200
    out = decode_rgb(reply.content)
    x, y, w, h = (int(v) for v in entry["faces"][0])
    centre = out[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4]
    assert (centre == 0).all()


def test_detect_answers_the_documented_json(server, easy_images):
    for entry in easy_images[:4]:
        data = (FACES_DEV / entry["file"]).read_bytes()
        reply = httpx.post(server.url + "/v1/detect", files={"file": ("x.jpg", data, "image/jpeg")})
        assert reply.status_code == 200
        body = reply.json()
        assert (body["width"], body["height"]) == (entry["width"], entry["height"])
        for face in body["faces"]:
            assert len(face["box"]) == 4 and 0 <= face["score"] <= 1
        for truth in entry["faces"]:
            assert any(iou(face["box"], truth) >= 0.5 for face in body["faces"])


def test_exif_and_gps_are_stripped(server, photo):
    _, pixels = photo
    data = jpeg_with_exif(pixels)
    assert Image.open(io.BytesIO(data)).getexif()
    reply = httpx.post(server.url + "/v1/anonymize", content=data, headers={"content-type": "image/jpeg"})
    assert reply.status_code == 200
    out = Image.open(io.BytesIO(reply.content))
    assert not out.getexif()
    assert b"SecretCam" not in reply.content and b"Exif" not in reply.content


def webp_header(width: int, height: int) -> bytes:
    """A WebP file that is only a VP8X header announcing a canvas of ``width`` x ``height``."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (64, 64), colour) for colour in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:])
    return out.getvalue()


BAD_INPUTS = {
    "empty body": (b"", "image/jpeg", 400),
    "not an image": (b"hello, world" * 10, "image/jpeg", 400),
    "truncated jpeg": (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "image/jpeg", 400),
    "gif": (b"GIF89a" + b"\x00" * 64, "image/jpeg", 415),
    "text content type": (b"hello", "text/plain", 415),
    "no content type": (b"hello", "", 415),
    "over the byte limit": (b"\xff\xd8\xff" + b"\x00" * 3_100_000, "image/jpeg", 413),
    "decompression bomb": (png_bomb(50000, 50000), "image/png", 413),
    "webp header of 50000x50000": (webp_header(50000, 50000), "image/webp", 413),
    "animated webp": (animated("WEBP"), "image/webp", 415),
    "animated png": (animated("PNG"), "image/png", 415),
    "multipart without its end": (b"--b0\r\nContent-Disposition: form-data; name=file\r\n\r\n\xff\xd8\xff",
                                  "multipart/form-data; boundary=b0", 400),
    "multipart of garbage": (b"\x00\xff" * 500, "multipart/form-data; boundary=b0", 400),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
@pytest.mark.parametrize("endpoint", ["/v1/anonymize", "/v1/detect"])
def test_bad_input_gets_its_status_and_a_json_reason(server, name, endpoint):
    body, content_type, status = BAD_INPUTS[name]
    reply = httpx.post(server.url + endpoint, content=body, headers={"content-type": content_type})
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"] and reply.json()["detail"]


def test_cmyk_jpeg_comes_back_as_rgb_and_a_polyglot_loses_its_payload(server):
    cmyk = io.BytesIO()
    Image.new("CMYK", (96, 64), (0, 255, 255, 0)).save(cmyk, "JPEG")  # red, in CMYK
    reply = httpx.post(server.url + "/v1/anonymize", content=cmyk.getvalue(), headers={"content-type": "image/jpeg"})
    assert reply.status_code == 200
    out = Image.open(io.BytesIO(reply.content))
    assert out.mode == "RGB" and out.getpixel((48, 32))[0] > 200 > out.getpixel((48, 32))[1] + 100

    jpeg = io.BytesIO()
    Image.new("RGB", (96, 64), "white").save(jpeg, "JPEG")
    polyglot = jpeg.getvalue() + b"<html><script>alert(document.cookie)</script></html>"
    reply = httpx.post(server.url + "/v1/anonymize", content=polyglot, headers={"content-type": "image/jpeg"})
    assert reply.status_code == 200 and b"<script>" not in reply.content  # re-encoded: nothing rides along
    assert reply.headers["content-type"] == "image/jpeg" and reply.headers["x-content-type-options"] == "nosniff"


def test_oversized_request_headers_are_refused_and_the_server_goes_on(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:  # 20 MB of headers used to be read whole
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(64).startswith(b"HTTP/1.1 400 ")
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_multipart_problems_are_explained(server, photo):
    _, pixels = photo
    no_file = httpx.post(server.url + "/v1/anonymize", files={"image": ("x.png", png_bytes(pixels), "image/png")})
    assert no_file.status_code == 400 and "file" in no_file.json()["detail"]
    wrong_type = httpx.post(server.url + "/v1/anonymize", files={"file": ("x.gif", b"GIF89a", "image/gif")})
    assert wrong_type.status_code == 415


@pytest.mark.parametrize("threshold", [7, 0, 0.01])  # 0 would make thousands of "faces" and cost 9x the CPU
def test_out_of_range_parameter_is_a_json_422(server, photo, threshold):
    _, pixels = photo
    reply = httpx.post(
        server.url + "/v1/anonymize", params={"threshold": threshold}, content=png_bytes(pixels),
        headers={"content-type": "image/png"},
    )
    assert reply.status_code == 422
    assert "threshold" in reply.json()["detail"]


@pytest.mark.parametrize("method, path, status, code", [
    ("GET", "/v1/anonymise", 404, "not_found"),
    ("PUT", "/healthz", 405, "method_not_allowed"),
])
def test_unknown_paths_and_methods_answer_in_the_same_envelope(server, method, path, status, code):
    reply = httpx.request(method, server.url + path)
    assert reply.status_code == status
    assert reply.json() == {"error": code, "detail": reply.reason_phrase}


def test_server_keeps_serving_after_bad_input(server, photo):
    for body, content_type, _ in BAD_INPUTS.values():
        httpx.post(server.url + "/v1/anonymize", content=body, headers={"content-type": content_type})
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    _, pixels = photo
    reply = httpx.post(server.url + "/v1/detect", content=png_bytes(pixels), headers={"content-type": "image/png"})
    assert reply.status_code == 200 and reply.json()["faces"]


def test_health_readiness_and_docs(server):
    assert httpx.get(server.url + "/healthz").status_code == 200
    ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["detector"] == "centerface"
    assert httpx.get(server.url + "/docs").status_code == 200
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert "/v1/anonymize" in paths and "/v1/detect" in paths


def test_overload_answers_fast_503_with_retry_after(start_server, faces_dev):
    srv = start_server({"STREAMER_SERVER__WORKERS": "1", "STREAMER_SERVER__QUEUE_SIZE": "0"})
    big = max(faces_dev, key=lambda im: im["width"] * im["height"])
    pixels = cv2.resize(read_rgb(big), None, fx=2, fy=2)
    body = png_bytes(pixels)

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(client.post(srv.url + "/v1/anonymize", content=body, headers={"content-type": "image/png"})
                  for _ in range(12))
            )

    replies = asyncio.run(flood())
    statuses = sorted(r.status_code for r in replies)
    assert set(statuses) <= {200, 503}
    assert 200 in statuses and 503 in statuses
    busy = next(r for r in replies if r.status_code == 503)
    assert busy.headers["retry-after"].isdigit()
    assert busy.json()["error"] == "overloaded"
    after = httpx.post(srv.url + "/v1/anonymize", content=body, headers={"content-type": "image/png"}, timeout=60)
    assert after.status_code == 200


def test_the_api_documents_what_a_camera_status_holds():
    spec = create_app(load_settings()).openapi()
    listing = spec["paths"]["/api/cameras"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listing["items"]["$ref"] == "#/components/schemas/CameraStatus"
    fields = spec["components"]["schemas"]["CameraStatus"]["properties"]
    assert {"state", "fps", "fail_closed_frames", "stage_errors", "latency_ms", "detector"} <= fields.keys()
