"""``streamer anonymize`` on video files: same frames and rate out, faces hidden, audio only on request."""

from __future__ import annotations

import math
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from clips import SINGLE_FACE, make_clip
from imaging import crop, detail_kept, sharpness
from streamer.config import AnonymizerSettings, DetectorSettings
from streamer.faces.detection import Face
from streamer.faces.detectors import create_detector
from streamer.stills import workers
from streamer.stills.video import LOOKAHEAD_FRAMES, anonymize_video, queue_size
from streamer.stills.workers import WorkerPool
from test_cli import streamer


@pytest.fixture(scope="module")
def clip_with_audio(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("video")
    video = make_clip(SINGLE_FACE, folder, seconds=2, width=640, height=360, fps=25)
    out = folder / "with-audio.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(video), "-f", "lavfi", "-i",
         "sine=frequency=440:duration=2", "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac",
         "-shortest", str(out)],
        check=True,
    )
    return out


def probe(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = [f for f in container.decode(video=0)]
        return {
            "frames": len(frames),
            "rate": video.average_rate,
            "times": [round(float(f.time), 3) for f in frames],
            "audio": len(container.streams.audio),
            "first": frames[0].to_ndarray(format="rgb24"),
        }


def test_video_keeps_frames_rate_and_timestamps_and_hides_the_face(clip_with_audio, tmp_path):
    out = tmp_path / "hidden.mp4"
    result = streamer("anonymize", str(clip_with_audio), "-o", str(out))
    assert result.returncode == 0, result.stderr
    src, dst = probe(clip_with_audio), probe(out)
    assert dst["frames"] == src["frames"] == 50
    assert dst["rate"] == src["rate"] == 25
    assert dst["times"] == src["times"]
    assert dst["audio"] == 0  # dropped unless asked for
    detector = create_detector(DetectorSettings())
    try:
        [face] = detector.detect(src["first"], 0.5)
        assert detail_kept(crop(src["first"], face.box), crop(dst["first"], face.box)) < 0.2
    finally:
        detector.close()


def test_keep_audio_copies_the_audio_track(clip_with_audio, tmp_path):
    out = tmp_path / "with-audio.mkv"
    result = streamer("anonymize", str(clip_with_audio), "-o", str(out), "--keep-audio")
    assert result.returncode == 0, result.stderr
    assert probe(out)["audio"] == 1


def test_a_zones_file_hides_its_zones_in_every_frame_of_a_video(clip_with_audio, tmp_path):
    zones = tmp_path / "zones.yaml"
    zones.write_text("door:\n  - {mode: black, points: [[0.3, 0], [0.5, 0], [0.5, 1], [0.3, 1]]}\n"
                     "yard:\n  - {mode: black, points: [[0, 0], [0.1, 0], [0.1, 0.1]]}\n")
    out = tmp_path / "zoned.mp4"
    ambiguous = streamer("anonymize", str(clip_with_audio), "-o", str(out), "--zones", str(zones))
    assert ambiguous.returncode == 2 and "--zones-camera" in ambiguous.stderr
    result = streamer("anonymize", str(clip_with_audio), "-o", str(out), "--zones", str(zones), "--zones-camera", "door")
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 50
    assert all(frame[4:-4, int(0.3 * 640) + 4 : int(0.5 * 640) - 4].mean() < 12 for frame in frames)


class ScriptedDetector:
    """The real detector, blind for its first ``blind`` calls (a face the detector finds late) and
    raising on every call after the first ``good`` ones (a detector that crashes)."""

    name = "scripted"

    def __init__(self, real, blind: int = 0, good: int | None = None) -> None:
        self.real, self.blind, self.good, self.calls = real, blind, good, 0

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        self.calls += 1
        if self.good is not None and self.calls > self.good:
            raise RuntimeError("detector crashed")
        return [] if self.calls <= self.blind else self.real.detect(image, threshold)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("follow_back_s", [0.0, 1.0])
def test_a_face_found_only_on_a_later_frame_is_hidden_on_the_frames_before_it(tmp_path, monkeypatch, follow_back_s):
    clip = make_clip(SINGLE_FACE, tmp_path, seconds=1, width=640, height=360, fps=25)
    real = create_detector(DetectorSettings())
    first_found = 10  # frames 0-9 are "missed"
    monkeypatch.setattr(workers, "create_detector", lambda settings: ScriptedDetector(real, blind=first_found))
    # one worker: calls in frame order
    pool = WorkerPool(DetectorSettings(), workers=1, queue_size=queue_size(1), max_wait_s=math.inf)
    out = tmp_path / "hidden.mp4"
    try:
        anonymize_video(clip, out, pool, 0.5, AnonymizerSettings(), hold_s=0.75, follow_back_s=follow_back_s)
        with av.open(str(clip)) as before, av.open(str(out)) as after:
            raw = [f.to_ndarray(format="rgb24") for f in before.decode(video=0)]
            hidden = [f.to_ndarray(format="rgb24") for f in after.decode(video=0)]
        faces = [real.detect(frame, 0.5) for frame in raw]
    finally:
        pool.shutdown()
        real.close()
    assert len(hidden) == len(raw) == 25
    assert LOOKAHEAD_FRAMES == 2
    # followed back: hidden on every frame; else from the 2 frames before it was found
    first_hidden = 0 if follow_back_s else first_found - 2
    for index in range(first_hidden, len(raw)):
        [face] = faces[index]
        assert detail_kept(crop(raw[index], face.box), crop(hidden[index], face.box)) < 0.2, index
    if not follow_back_s:  # further back no later detection was known: the face shows how blind the detector was
        [face] = faces[0]
        assert detail_kept(crop(raw[0], face.box), crop(hidden[0], face.box)) > 0.5


def test_a_face_found_late_is_followed_back_over_the_frames_still_held(tmp_path, monkeypatch):
    # a longer clip than the look-back: frames are written while later ones are still detected
    clip = make_clip(SINGLE_FACE, tmp_path, seconds=3, width=640, height=360, fps=25)
    real = create_detector(DetectorSettings())
    first_found, back_frames = 50, 10  # follow_back_s 0.4 at 25 fps
    monkeypatch.setattr(workers, "create_detector", lambda settings: ScriptedDetector(real, blind=first_found))
    pool = WorkerPool(DetectorSettings(), workers=1, queue_size=queue_size(1), max_wait_s=math.inf)
    out = tmp_path / "hidden.mp4"
    try:
        anonymize_video(clip, out, pool, 0.5, AnonymizerSettings(), hold_s=0.75, follow_back_s=back_frames / 25)
        raw, _ = decoded(clip)
        hidden, _ = decoded(out)
        faces = [real.detect(frame, 0.5) for frame in raw]
    finally:
        pool.shutdown()
        real.close()
    assert len(hidden) == len(raw) == 75
    # the face found on frame 50 was followed back over the frames held then: the look-back and
    # the look-ahead (those written before it was found show it: the detector was blind there)
    first_hidden = first_found - back_frames - LOOKAHEAD_FRAMES
    judged = [i for i, found in enumerate(faces) if len(found) == 1]
    assert len(judged) >= 70
    for index in judged:
        kept = detail_kept(crop(raw[index], faces[index][0].box), crop(hidden[index], faces[index][0].box))
        assert kept < 0.2 if index >= first_hidden else kept > 0.5, index


def test_a_clip_whose_picture_size_changes_is_anonymized_to_its_end(tmp_path):
    # two recordings of other sizes joined without re-encoding, as a camera's stream that switched
    first = make_clip(SINGLE_FACE, tmp_path / "a", seconds=1, width=640, height=360, fps=25)
    second = make_clip(SINGLE_FACE, tmp_path / "b", seconds=1, start=1, width=480, height=270, fps=25)
    listing = tmp_path / "list.txt"
    listing.write_text(f"file '{first}'\nfile '{second}'\n")
    joined = tmp_path / "joined.mkv"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                    "-c", "copy", str(joined)], check=True, timeout=60)
    out = tmp_path / "hidden.mp4"
    result = streamer("anonymize", str(joined), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert probe(out)["frames"] == 50


# -- clips whose frames are far apart or turned: fail closed, nothing shown ----------------


def write_frames(path: Path, frames: list[np.ndarray], pts: list[int], rate: int, rotation: int = 0) -> Path:
    """An H.264 MP4 of ``frames`` at the given timestamps (in 1/``rate`` s), with a display rotation."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        # x264's output depends on its threads (PyAV: one slice thread per core): pinned, as 2 cores have it
        stream.codec_context.thread_count, stream.codec_context.thread_type = 2, "SLICE"
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, rate)
        if rotation:
            stream.set_display_rotation(rotation)
        for pixels, stamp in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = stamp, stream.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def decoded(path: Path) -> tuple[list[np.ndarray], list[int]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [f.to_ndarray(format="rgb24") for f in frames], [f.rotation or 0 for f in frames]


@pytest.fixture(scope="module")
def face_frames(tmp_path_factory) -> list[np.ndarray]:
    """24 frames of the single-face clip, one every half second (the face moves between them)."""
    clip = make_clip(SINGLE_FACE, tmp_path_factory.mktemp("frames"), seconds=12, width=640, height=360, fps=2)
    frames, _ = decoded(clip)
    return frames[:24]


@pytest.fixture(scope="module")
def judge():
    """The accurate detector, which finds the face of every raw frame at 0.5."""
    detector = create_detector(DetectorSettings(profile="accurate", int8=False))
    yield detector
    detector.close()


def assert_no_face_shown(raw: list[np.ndarray], out: list[np.ndarray], judge) -> None:
    assert len(out) == len(raw)
    for index, (before, after) in enumerate(zip(raw, out)):
        assert after.shape == before.shape, index
        for face in judge.detect(before, 0.5):
            assert detail_kept(crop(before, face.box), crop(after, face.box)) < 0.2, index
        assert not judge.detect(after, 0.5), index


def test_a_one_fps_clip_keeps_every_frame_and_shows_no_face(face_frames, judge, tmp_path):
    clip = write_frames(tmp_path / "onefps.mp4", face_frames, list(range(len(face_frames))), rate=1)
    out = tmp_path / "hidden.mp4"
    assert streamer("anonymize", str(clip), "-o", str(out)).returncode == 0
    hidden, _ = decoded(out)
    assert_no_face_shown(face_frames, hidden, judge)


def test_a_clip_with_a_gap_in_its_timestamps_shows_no_face(face_frames, judge, tmp_path):
    # 25 fps with a 3-second hole after the 12th frame (a recorder that paused)
    pts = [i if i < 12 else i + 75 for i in range(len(face_frames))]
    clip = write_frames(tmp_path / "gap.mp4", face_frames, pts, rate=25)
    out = tmp_path / "hidden.mp4"
    assert streamer("anonymize", str(clip), "-o", str(out)).returncode == 0
    hidden, _ = decoded(out)
    assert_no_face_shown(face_frames, hidden, judge)
    with av.open(str(out)) as container:
        assert [round(float(f.time) * 25) for f in container.decode(video=0)] == pts


def test_a_rotated_phone_clip_is_detected_upright_and_plays_the_same_way(face_frames, judge, tmp_path):
    # stored sideways with a display matrix that turns it back, as phones record portrait video
    sideways = [np.ascontiguousarray(np.rot90(f, -1)) for f in face_frames[:8]]
    clip = write_frames(tmp_path / "phone.mp4", sideways, list(range(8)), rate=10, rotation=90)
    raw, rotations = decoded(clip)
    assert rotations[0] == 90 and raw[0].shape == (640, 360, 3)
    out = tmp_path / "hidden.mp4"
    assert streamer("anonymize", str(clip), "-o", str(out)).returncode == 0
    hidden, rotations = decoded(out)
    assert set(rotations) == {0}  # written upright: plays as the input did
    assert_no_face_shown(face_frames[:8], hidden, judge)


def test_frames_whose_detection_failed_are_hidden_whole_and_kept(face_frames, judge, tmp_path, monkeypatch):
    clip = write_frames(tmp_path / "clip.mp4", face_frames[:10], list(range(10)), rate=10)
    real = create_detector(DetectorSettings(profile="realtime"))
    monkeypatch.setattr(workers, "create_detector", lambda settings: ScriptedDetector(real, good=4))
    pool = WorkerPool(DetectorSettings(), workers=1, queue_size=16, max_wait_s=math.inf)
    try:
        report = anonymize_video(clip, tmp_path / "out.mp4", pool, 0.5, AnonymizerSettings(), hold_s=0.75)
    finally:
        pool.shutdown()
        real.close()
    assert report.frames == 10 and report.hidden_whole == 6
    hidden, _ = decoded(tmp_path / "out.mp4")
    assert_no_face_shown(face_frames[:10], hidden, judge)
    assert all(sharpness(frame) < 5 for frame in hidden[4:])  # nothing left but light
