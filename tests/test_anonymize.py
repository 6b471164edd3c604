import numpy as np
import pytest

from conftest import read_rgb
from imaging import crop, detail_kept
from streamer.config import AnonymizerSettings, Mode, Shape
from streamer.faces.anonymizer import Anonymizer, coverage_mask, region_for
from streamer.faces.detection import Face


@pytest.fixture(scope="module")
def photo(easy_images):
    entry = max(easy_images, key=lambda im: max(f[3] for f in im["faces"]))
    return read_rgb(entry), [Face(tuple(f), 1.0) for f in entry["faces"]]


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("shape", list(Shape))
def test_faces_lose_their_detail_and_the_rest_is_untouched(photo, mode, shape):
    pixels, faces = photo
    out = Anonymizer(AnonymizerSettings(mode=mode, shape=shape)).apply(pixels.copy(), faces)
    for face in faces:
        assert detail_kept(crop(pixels, face.box), crop(out, face.box)) < 0.2
    hidden = coverage_mask(faces, pixels.shape[1], pixels.shape[0], AnonymizerSettings(shape=shape))
    assert np.array_equal(out[~hidden], pixels[~hidden])
    assert not np.array_equal(out[hidden], pixels[hidden])


def test_blur_of_a_large_face_leaves_no_recognisable_structure():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    image = face.copy()
    Anonymizer(AnonymizerSettings(mode=Mode.blur, shape=Shape.box)).apply(image, [Face((0, 0, 400, 400), 1.0)])
    # A face 400 px tall keeps no detail finer than a few tens of pixels.
    assert image.std() < 0.1 * face.std()


def test_padding_grows_the_region_around_the_box_centre():
    centred = AnonymizerSettings(padding=1.5, padding_below=0.5)
    region = region_for(Face((100, 100, 40, 60), 1.0), centred, width=1000, height=1000)
    assert (region.x0, region.y0, region.x1, region.y1) == (90, 85, 150, 175)


def test_padding_below_puts_more_of_the_added_height_under_the_face():
    # 60 px tall, padded 1.5x: 30 px more, three quarters of it below (chin, mask)
    region = region_for(Face((100, 100, 40, 60), 1.0), AnonymizerSettings(padding=1.5), width=1000, height=1000)
    assert (region.x0, region.y0, region.x1, region.y1) == (90, 92, 150, 183)


def test_region_is_clipped_to_the_image():
    settings = AnonymizerSettings(padding=1.3)
    region = region_for(Face((-10, -10, 30, 30), 1.0), settings, width=100, height=100)
    assert (region.x0, region.y0) == (0, 0)
    assert region_for(Face((200, 200, 10, 10), 1.0), settings, width=100, height=100) is None


def test_alpha_channel_is_kept():
    image = np.full((100, 100, 4), 128, dtype=np.uint8)
    image[..., 3] = 77
    Anonymizer(AnonymizerSettings(mode=Mode.fill, shape=Shape.box)).apply(image, [Face((20, 20, 40, 40), 1.0)])
    assert (image[..., 3] == 77).all()
    assert (image[30, 30, :3] == 0).all()


def test_audit_overlay_outlines_each_region():
    image = np.zeros((200, 200, 3), dtype=np.uint8)
    settings = AnonymizerSettings(mode=Mode.fill, shape=Shape.box, padding=1.3, padding_below=0.5, audit=True,
                                  audit_color=(0, 255, 0))
    Anonymizer(settings).apply(image, [Face((50, 50, 100, 100), 1.0)])
    assert tuple(image[35, 100]) == (0, 255, 0)  # top edge of the 1.3x padded box
    assert tuple(image[100, 100]) == (0, 0, 0)


def test_ellipse_covers_nearly_all_of_the_face_box():
    face = Face((100, 100, 80, 100), 1.0)
    mask = coverage_mask([face], 400, 400, AnonymizerSettings(padding=1.3, shape=Shape.ellipse))
    assert mask[100:200, 100:180].mean() > 0.95
