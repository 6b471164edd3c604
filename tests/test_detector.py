import pytest

from conftest import matched_faces, read_rgb
from streamer.config import DetectorSettings
from streamer.faces.detectors import create_detector


@pytest.fixture(scope="module")
def detector():
    det = create_detector(DetectorSettings(profile="fast"))
    yield det
    det.close()


@pytest.mark.parametrize("backend", ["mediapipe", "centerface"])
def test_every_backend_finds_the_large_faces_of_easy_images(backend, easy_images):
    det = create_detector(DetectorSettings(backend=backend))
    try:
        found = matched_faces(det, easy_images)
    finally:
        det.close()
    total = sum(len(entry["faces"]) for entry in easy_images)
    assert total >= 12
    assert found / total >= 0.9


def test_threshold_is_applied_below_the_graphs_own_0_6(detector, faces_dev):
    crowds = [im for im in faces_dev if len(im["faces"]) >= 10][:15]
    low = [f for im in crowds for f in detector.detect(read_rgb(im), 0.3)]
    high = [f for im in crowds for f in detector.detect(read_rgb(im), 0.7)]
    assert all(f.score >= 0.3 for f in low) and all(f.score >= 0.7 for f in high)
    # The stock full-range graph never reports a score under 0.6 whatever it is asked for.
    assert any(f.score < 0.6 for f in low)
    assert len(high) < len(low)


def test_boxes_are_pixels_inside_the_image(detector, easy_images):
    entry = easy_images[0]
    pixels = read_rgb(entry)
    for face in detector.detect(pixels, 0.3):
        x, y, w, h = face.box
        assert 0 <= x and 0 <= y and w > 1 and h > 1
        assert x + w <= pixels.shape[1] and y + h <= pixels.shape[0]


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(ValueError, match="mediapipe"):
        create_detector(DetectorSettings(backend="nope"))
