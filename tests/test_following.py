"""Boxes that follow their faces: a real photo filmed by a panning, zooming camera, the face
detected on the first frame only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import read_rgb
from streamer.config import AnonymizerSettings, Shape
from streamer.faces.anonymizer import coverage_mask
from streamer.faces.detection import Face
from streamer.faces.following import Follower, follow_back, grey_copy

WIDTH, HEIGHT = 1280, 720
PADDING = 1.3  # less than the anonymizer's 1.4, centred: a box must follow its face closely


def _film(photo: np.ndarray, box: list[float], frames: int, pan_px: float, zoom: float):
    """Frames of a camera that pans right by ``pan_px`` and zooms by ``zoom`` a frame, and the
    labelled face's box in each."""
    height, width = photo.shape[:2]
    fit = min(WIDTH / width, HEIGHT / height)
    for i in range(frames):
        scale = fit * zoom**i
        # keep the photo's centre in the middle of the picture, shifted left as the camera pans right
        tx = WIDTH / 2 - scale * width / 2 - pan_px * i
        ty = HEIGHT / 2 - scale * height / 2
        matrix = np.float32([[scale, 0, tx], [0, scale, ty]])
        pixels = cv2.warpAffine(photo, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
        x, y, w, h = box
        yield pixels, (x * scale + tx, y * scale + ty, w * scale, h * scale)


def _covered(faces: list[Face], box: tuple[float, float, float, float]) -> float:
    """Share of ``box`` the anonymizer would hide for these faces."""
    mask = coverage_mask(faces, WIDTH, HEIGHT, AnonymizerSettings(padding=PADDING, padding_below=0.5, shape=Shape.box))
    x, y, w, h = (int(round(v)) for v in box)
    return float(mask[max(0, y) : y + h, max(0, x) : x + w].mean())


@pytest.fixture(scope="module")
def photo(easy_images: list[dict]) -> tuple[np.ndarray, list[float]]:
    """A photo with one face, and that face's box."""
    entry = next(im for im in easy_images if len(im["faces"]) == 1)
    return read_rgb(entry), entry["faces"][0][:4]


def test_a_face_detected_once_stays_covered_while_the_camera_pans_and_zooms(photo):
    follower = Follower(follow_s=60)
    film = list(_film(*photo, frames=45, pan_px=6, zoom=1.01))
    first_pixels, first_box = film[0]
    detected = [Face(first_box, 0.9)]
    assert _covered(follower.step(first_pixels, 0, detected), first_box) == 1.0
    for i, (pixels, box) in enumerate(film[1:], start=1):
        assert _covered(follower.step(pixels, i, None), box) >= 0.8, f"frame {i}"
    # the box held where the face was detected no longer covers it: the follower is what hides it
    assert _covered(detected, film[-1][1]) < 0.5


def test_a_face_the_detector_lost_is_let_go_after_follow_s(photo):
    follower = Follower(follow_s=10)
    film = list(_film(*photo, frames=14, pan_px=2, zoom=1.0))
    follower.step(film[0][0], 0, [Face(film[0][1], 0.9)])
    followed = [len(follower.step(pixels, i, None)) for i, (pixels, _) in enumerate(film[1:], start=1)]
    assert followed == [1] * 10 + [0] * 3


def test_a_new_detection_puts_the_box_where_the_detector_says(photo):
    follower = Follower(follow_s=10)
    (first, box), (second, _) = list(_film(*photo, frames=2, pan_px=0, zoom=1.0))
    follower.step(first, 0, [Face(box, 0.9)])
    x, y, w, h = box
    elsewhere = Face((x + w / 4, y, w, h), 0.8)  # overlaps the followed box: the same face
    assert follower.step(second, 1, [elsewhere]) == [elsewhere]


def test_a_new_picture_size_drops_what_was_followed(photo):
    follower = Follower(follow_s=10)
    pixels, box = next(_film(*photo, frames=1, pan_px=0, zoom=1.0))
    follower.step(pixels, 0, [Face(box, 0.9)])
    assert follower.step(cv2.resize(pixels, (640, 360)), 1, None) == []


def test_following_can_be_turned_off(photo):
    follower = Follower(follow_s=0)
    pixels, box = next(_film(*photo, frames=1, pan_px=0, zoom=1.0))
    assert follower.step(pixels, 0, [Face(box, 0.9)]) == []


def test_a_face_found_late_is_followed_back_over_the_frames_before(photo):
    film = list(_film(*photo, frames=30, pan_px=6, zoom=1.01))
    last_pixels, last_box = film[-1]
    greys = [grey_copy(pixels) for pixels, _ in reversed(film)]
    factor = greys[0][1]
    earlier = list(follow_back((grey for grey, _ in greys), factor, Face(last_box, 0.9), WIDTH, HEIGHT))
    assert len(earlier) == len(film) - 1
    for face, (_, box) in zip(earlier, reversed(film[:-1])):
        assert _covered([face], box) >= 0.8
    # held where it was found, the box would have missed the face on the first frame
    assert _covered([Face(last_box, 0.9)], film[0][1]) < 0.5


def test_following_back_stops_where_the_picture_cuts_to_another_scene(photo):
    pixels, box = next(_film(*photo, frames=1, pan_px=0, zoom=1.0))
    other_scene = np.ascontiguousarray(np.roll(pixels[::-1], WIDTH // 3, axis=1))
    greys = [grey_copy(frame)[0] for frame in (pixels, pixels, other_scene, pixels)]
    earlier = list(follow_back(greys, grey_copy(pixels)[1], Face(box, 0.9), WIDTH, HEIGHT))
    assert len(earlier) == 1  # followed onto the identical frame before, not across the cut


def test_following_back_stops_where_the_picture_size_changes(photo):
    pixels, box = next(_film(*photo, frames=1, pan_px=0, zoom=1.0))
    other = cv2.resize(pixels, (WIDTH // 2, HEIGHT // 3))  # its grey copy has another size too
    greys = [grey_copy(frame)[0] for frame in (pixels, pixels, other, pixels)]
    assert len(list(follow_back(greys, grey_copy(pixels)[1], Face(box, 0.9), WIDTH, HEIGHT))) == 1
