"""The ``streamer`` command as a user runs it."""

import json
import shutil
import subprocess
import sys


from conftest import FACES_DEV, ROOT, read_rgb
from imaging import crop, detail_kept
from streamer.config import ImageSettings
from streamer.stills.images import decode


def streamer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_anonymize_a_folder_writes_anonymized_copies(tmp_path, easy_images):
    src = tmp_path / "photos"
    (src / "nested").mkdir(parents=True)
    chosen = easy_images[:3]
    for i, entry in enumerate(chosen):
        shutil.copy(FACES_DEV / entry["file"], (src / "nested" if i == 2 else src) / f"p{i}.jpg")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"

    result = streamer("anonymize", str(src), "-o", str(out))
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["photos/nested/p2.jpg", "photos/p0.jpg", "photos/p1.jpg"]
    for i, entry in enumerate(chosen):
        target = out / "photos" / ("nested" if i == 2 else "") / f"p{i}.jpg"
        pixels, _ = decode(target.read_bytes(), ImageSettings())
        original = read_rgb(entry)
        assert pixels.shape == original.shape
        for truth in entry["faces"]:
            assert detail_kept(crop(original, truth), crop(pixels, truth)) < 0.2


def test_anonymize_one_file_to_a_named_output_and_report_bad_files(tmp_path, easy_images):
    entry = easy_images[0]
    target = tmp_path / "single.png"
    shutil.copy(FACES_DEV / entry["file"], tmp_path / "in.jpg")
    ok = streamer("anonymize", str(tmp_path / "in.jpg"), "-o", str(target), "--mode", "pixelate")
    assert ok.returncode == 0, ok.stderr
    assert target.read_bytes()[:3] == b"\xff\xd8\xff"  # the image keeps its own format

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xffnot really")
    bad = streamer("anonymize", str(tmp_path / "broken.jpg"), "-o", str(tmp_path / "out"))
    assert bad.returncode == 1
    assert "broken.jpg" in bad.stderr


def test_detect_prints_json(easy_images):
    entry = easy_images[0]
    result = streamer("detect", str(FACES_DEV / entry["file"]), "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert (body["width"], body["height"]) == (entry["width"], entry["height"])
    assert len(body["faces"]) >= len(entry["faces"])


def test_invalid_config_stops_with_the_key_named(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("anonymizer:\n  mode: smudge\n")
    result = streamer("--config", str(config), "detect", "x.jpg")
    assert result.returncode == 2
    assert "anonymizer.mode" in result.stderr
