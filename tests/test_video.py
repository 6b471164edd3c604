"""``streamer anonymize`` on video files: same frames and rate out, faces hidden, audio only on request."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest

from clips import SINGLE_FACE, make_clip
from imaging import crop, detail_kept
from streamer.config import DetectorSettings
from streamer.detectors import create_detector
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
