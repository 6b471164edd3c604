"""``streamer anonymize`` on video files: same frames and rate out, faces hidden, audio only on request."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from clips import SINGLE_FACE, make_clip
from imaging import crop, detail_kept
from streamer import workers
from streamer.config import AnonymizerSettings, DetectorSettings
from streamer.detection import Face
from streamer.detectors import create_detector
from streamer.video import LOOKAHEAD_FRAMES, anonymize_video
from streamer.workers import WorkerPool
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


class LateDetector:
    """The real detector, blind for its first ``blind`` calls (a face the detector finds late)."""

    name = "late"

    def __init__(self, real, blind: int) -> None:
        self.real, self.blind, self.calls = real, blind, 0

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        self.calls += 1
        return [] if self.calls <= self.blind else self.real.detect(image, threshold)

    def close(self) -> None:
        pass


def test_a_face_found_only_on_a_later_frame_is_hidden_on_the_frames_before_it(tmp_path, monkeypatch):
    clip = make_clip(SINGLE_FACE, tmp_path, seconds=1, width=640, height=360, fps=25)
    real = create_detector(DetectorSettings())
    first_found = 10  # frames 0-9 are "missed"
    monkeypatch.setattr(workers, "create_detector", lambda settings: LateDetector(real, first_found))
    pool = WorkerPool(DetectorSettings(), workers=1, queue_size=16, max_wait_s=math.inf)  # one worker: calls in frame order
    out = tmp_path / "hidden.mp4"
    try:
        anonymize_video(clip, out, pool, 0.5, AnonymizerSettings(), hold_s=0.75)
        with av.open(str(clip)) as before, av.open(str(out)) as after:
            raw = [f.to_ndarray(format="rgb24") for f in before.decode(video=0)]
            hidden = [f.to_ndarray(format="rgb24") for f in after.decode(video=0)]
        [face] = real.detect(raw[first_found], 0.5)
    finally:
        pool.shutdown()
        real.close()
    assert len(hidden) == len(raw) == 25
    assert LOOKAHEAD_FRAMES == 2
    for index in range(first_found - 2, len(raw)):  # hidden from the 2 frames before it was found
        assert detail_kept(crop(raw[index], face.box), crop(hidden[index], face.box)) < 0.2, index
    # further back no later detection was known yet: the face there shows how blind the detector was
    assert detail_kept(crop(raw[0], face.box), crop(hidden[0], face.box)) > 0.5
