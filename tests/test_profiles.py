"""Detector profiles: the config that names them, the faces each finds, and boxes held across frames."""

from __future__ import annotations

import threading
import time
from functools import partial

import av
import pytest

from clips import SINGLE_FACE, make_clip
from conftest import matched_faces
from imaging import crop, detail_kept
from streamer.config import DETECTOR_PROFILES, ConfigError, DetectorSettings, LiveDetectorSettings, load_settings
from streamer.faces.detection import Face
from streamer.faces.detectors import create_detector
from streamer.faces.detectors.centerface import CenterFace
from streamer.faces.tracking import Tracker
from test_pipeline import run_pipeline


@pytest.fixture(scope="module")
def crowds(faces_dev):
    return [im for im in faces_dev if len(im["faces"]) >= 10][:8]


@pytest.fixture(scope="module")
def detectors():
    made = {name: create_detector(DetectorSettings(profile=name)) for name in DETECTOR_PROFILES}
    yield made
    for detector in made.values():
        detector.close()


# -- configuration -------------------------------------------------------------------------


def test_the_shipped_config_uses_accurate_for_stills_and_realtime_for_cameras():
    settings = load_settings()
    assert settings.detector.profile == "accurate" and settings.detector.backend == "centerface"
    assert not settings.detector.int8 and settings.detector.scale > 2
    assert settings.pipeline.detector.profile == "realtime"
    assert settings.pipeline.detector.backend == "centerface" and settings.pipeline.detector.int8
    # The class defaults are the shipped file's too.
    assert settings.detector == DetectorSettings()
    assert settings.pipeline.detector == LiveDetectorSettings()


def test_a_profile_fills_the_keys_left_unset_and_set_keys_win():
    fast = DetectorSettings(profile="fast")
    assert (fast.backend, fast.threshold) == ("mediapipe", 0.3)
    tuned = DetectorSettings(profile="accurate", threshold=0.4, scale=2.0)
    assert (tuned.backend, tuned.threshold, tuned.scale, tuned.int8) == ("centerface", 0.4, 2.0, False)
    # A dump validates back to the same settings.
    assert DetectorSettings.model_validate(tuned.model_dump()) == tuned


def test_profiles_can_be_chosen_from_the_environment(monkeypatch):
    monkeypatch.setenv("STREAMER_DETECTOR__PROFILE", "fast")
    monkeypatch.setenv("STREAMER_PIPELINE__DETECTOR__PROFILE", "accurate")
    monkeypatch.setenv("STREAMER_PIPELINE__DETECTOR__THRESHOLD", "0.5")
    settings = load_settings()
    assert settings.detector.backend == "mediapipe"
    assert settings.pipeline.detector.profile == "accurate" and settings.pipeline.detector.threshold == 0.5


def test_an_unknown_profile_stops_the_program_naming_the_known_ones(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("detector:\n  profile: fastest\n")
    with pytest.raises(ConfigError, match="fast, accurate, realtime"):
        load_settings(config)


# -- what each profile finds ---------------------------------------------------------------


@pytest.mark.parametrize("profile", list(DETECTOR_PROFILES))
def test_every_profile_finds_the_large_faces_of_easy_images(profile, detectors, easy_images):
    detector = detectors[profile]
    found = matched_faces(detector, easy_images, threshold=DetectorSettings(profile=profile).threshold)
    assert found / sum(len(entry["faces"]) for entry in easy_images) >= 0.9


def test_accurate_finds_far_more_crowd_faces_than_the_others(detectors, crowds):
    found = {name: matched_faces(det, crowds, threshold=0.3) for name, det in detectors.items()}
    total = sum(len(entry["faces"]) for entry in crowds)
    assert found["accurate"] >= 0.6 * total
    assert found["accurate"] > 1.15 * found["realtime"] > 1.15 * found["fast"]


def test_int8_finds_the_faces_float_finds(crowds):
    float_ = create_detector(DetectorSettings(profile="realtime", int8=False))
    try:
        reference = matched_faces(float_, crowds, threshold=0.3)
    finally:
        float_.close()
    int8 = create_detector(DetectorSettings(profile="realtime"))
    try:
        assert abs(matched_faces(int8, crowds, threshold=0.3) - reference) <= 0.05 * reference
    finally:
        int8.close()


def test_the_pixel_budget_lowers_the_scale():
    det = create_detector(DetectorSettings(profile="realtime"))
    assert isinstance(det, CenterFace)
    assert det.scale_for(640, 360) == 1.0  # under the budget: never upscaled past scale
    assert det.scale_for(1280, 720) == pytest.approx(0.75, abs=0.02)  # ~960x540
    accurate = create_detector(DetectorSettings(profile="accurate"))
    assert accurate.scale_for(416, 300) == 2.5
    assert 1280 * 720 * accurate.scale_for(1280, 720) ** 2 == pytest.approx(2_500_000, rel=0.01)
    det.close(), accurate.close()


# -- held boxes ----------------------------------------------------------------------------


def test_a_held_box_disappears_after_its_hold_time():
    face = Face((10.0, 10.0, 40.0, 40.0), 0.9)
    tracker = Tracker(hold_s=0.5)
    tracker.update(0.0, [face])
    tracker.update(0.1, [])  # missed on the next detection: still held
    assert tracker.faces_at(0.1) == [face]
    assert tracker.faces_at(0.45) == [face]
    tracker.update(0.55, [])  # more than hold_s since it was last seen: gone
    assert tracker.faces_at(0.55) == []
    tracker.update(0.6, [Face((12.0, 11.0, 40.0, 40.0), 0.8)])  # seen again: hidden again at once
    assert len(tracker.faces_at(0.6)) == 1


def test_detection_older_than_the_hold_hides_the_whole_frame():
    tracker = Tracker(hold_s=0.5)
    assert tracker.faces_at(time.monotonic()) is None  # nothing detected yet
    tracker.update(1.0, [])
    assert tracker.faces_at(1.4) == []
    assert tracker.faces_at(1.6) is None


def test_a_frame_between_two_detections_is_hidden_at_both_boxes():
    before, after = Face((100.0, 100.0, 50.0, 50.0), 0.9), Face((110.0, 90.0, 50.0, 50.0), 0.9)
    tracker = Tracker(hold_s=0.75)
    tracker.update(0.0, [before])
    assert tracker.faces_at(0.1) == [before]  # the later detection is not known yet
    tracker.update(0.2, [after])  # the same face (IoU >= 0.3) moved
    assert tracker.faces_at(0.1) == [Face((100.0, 90.0, 60.0, 60.0), 0.9)]  # one box around both
    assert tracker.faces_at(0.2) == [after]  # the detector saw this very frame
    assert tracker.faces_at(0.3) == [after]


def test_a_face_first_seen_on_a_later_frame_is_hidden_on_the_frames_before():
    face = Face((10.0, 10.0, 40.0, 40.0), 0.9)
    tracker = Tracker(hold_s=0.75)
    tracker.update(0.0, [])
    tracker.update(0.1, [face])
    assert tracker.faces_at(0.05) == [face]


def test_waiting_for_detection_ends_when_it_comes_or_at_the_deadline():
    tracker = Tracker(hold_s=0.75)
    now = time.monotonic()
    assert tracker.wait_for(now, now + 0.05) is False  # nothing came
    timer = threading.Timer(0.05, tracker.update, args=(now, []))
    timer.start()
    started = time.monotonic()
    assert tracker.wait_for(now, started + 5.0) is True
    assert time.monotonic() - started < 4.0  # woken by the detection, not by the 5 s deadline
    timer.join()
    # A frame whose deadline has passed (a backlog behind a stalled detector) does not wait at all.
    started = time.monotonic()
    assert tracker.wait_for(now + 10.0, now) is False and time.monotonic() - started < 1.0


# -- the live pipeline with the realtime profile ------------------------------------------


def test_realtime_profile_hides_the_face_in_every_output_frame(tmp_path_factory):
    clip = make_clip(SINGLE_FACE, tmp_path_factory.mktemp("clips"), seconds=3, width=640, height=360)
    with av.open(str(clip)) as container:
        raw = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    reference = create_detector(DetectorSettings(profile="fast"))
    try:
        faces = [reference.detect(pixels, 0.5) for pixels in raw]
    finally:
        reference.close()
    live = LiveDetectorSettings()
    pipe, outputs = run_pipeline(clip, partial(create_detector, live), seconds=3.0, threshold=live.threshold)
    status = pipe.final_status
    assert status["fps"]["output"] >= 20 and status["fps"]["detect"] >= 5
    assert len(outputs) >= 50
    checked = 0
    for frame in outputs:
        for face in faces[frame.index % len(raw)]:
            assert detail_kept(crop(raw[frame.index % len(raw)], face.box), crop(frame.pixels, face.box)) < 0.2
            checked += 1
    assert checked >= 50
