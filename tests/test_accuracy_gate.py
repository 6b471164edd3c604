"""Accuracy gate: every shipped detector profile keeps the accuracy recorded in ``accuracy_gate.json``.

A dependency bump (onnxruntime, MediaPipe, OpenCV, numpy) or another CPU can change which faces
the detectors find without any test of behaviour noticing; this gate turns that into a red CI.
Each profile (fast, accurate, realtime) runs over a fixed slice of faces-dev, about 150 photos
spread over its sources, scored by ``bench/accuracy.py`` (privacy recall: share of labelled faces
at least 80% covered by the regions the anonymizer hides as shipped (padding 1.4, box); AP: VOC all-point
at IoU 0.5; ``ignore`` boxes count neither way). A profile fails when its privacy recall or AP is
more than ``MAX_DROP`` points under the recorded figure; a rise never fails. A second test wants
the realtime profile (the one that ships in int8) within ``INT8_FLOAT_GAP`` points of itself in
float: int8 must not cost recall on the CPU the tests run on.

After an intended change (a new model, profile or quantization), re-record, then commit the JSON::

    .venv/bin/python tests/test_accuracy_gate.py --record

(without ``--record`` it prints the figures beside the recorded ones and writes nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from conftest import FACES_DEV, ROOT
from streamer.config import DETECTOR_PROFILES, AnonymizerSettings, DetectorSettings
from streamer.faces.detectors import create_detector

sys.path.append(str(ROOT / "bench"))  # appended: bench's scripts (pipeline.py, load.py...) shadow no module

from machine import cpu  # noqa: E402
from accuracy import (  # noqa: E402
    IOU_MATCH,
    PRIVACY_COVER,
    RANKING_FLOOR,
    Report,
    Sample,
    describe,
    evaluate,
    load_samples,
)

RECORD = Path(__file__).with_name("accuracy_gate.json")
RECORD_COMMAND = ".venv/bin/python tests/test_accuracy_gate.py --record"
SLICE_IMAGES = 150
MAX_DROP = 2.0  # points of privacy recall or AP a profile may lose against its record
INT8_FLOAT_GAP = 1.0  # points of privacy recall or AP between the realtime profile in int8 and in float
GATED = ("privacy_recall", "ap")
FLOAT = "realtime, float"  # the realtime profile with int8 off: the reference its quantization must match
ANONYMIZER = AnonymizerSettings()  # as shipped: padding 1.4, box
PACKAGES = ("onnxruntime", "mediapipe", "opencv-python-headless", "numpy")


def pick_slice(samples: list[Sample]) -> list[Sample]:
    """About ``SLICE_IMAGES`` samples, each source's share of them in proportion to its size (at
    least one), evenly spaced through that source in annotations.json order; kept in that order."""
    by_source: dict[str, list[Sample]] = {}
    for sample in samples:
        by_source.setdefault(sample.source, []).append(sample)
    chosen: set[Path] = set()
    for group in by_source.values():
        count = max(1, round(SLICE_IMAGES * len(group) / len(samples)))
        chosen |= {group[(2 * i + 1) * len(group) // (2 * count)].path for i in range(count)}
    return [sample for sample in samples if sample.path in chosen]


def recorded_slice(record: dict[str, Any], data: Path) -> list[Sample]:
    """The samples the record was measured on, by file name; fails if faces-dev no longer has one."""
    samples = {sample.path.relative_to(data).as_posix(): sample for sample in load_samples(data, None)}
    missing = [name for name in record["slice"]["files"] if name not in samples]
    if missing:
        raise LookupError(f"faces-dev at {data} has no {missing[:3]}...; re-record: {RECORD_COMMAND}")
    return [samples[name] for name in record["slice"]["files"]]


def figures(report: Report) -> dict[str, float]:
    """The recorded figures of a report, in percent."""
    everyone = report.rows[0]
    shares = {
        "privacy_recall": everyone.privacy_recall,
        "privacy_recall_32": report.hidden_32,
        "ap": report.ap,
        "recall": everyone.recall,
        "precision": report.precision,
    }
    return {key: round(100 * value, 2) for key, value in shares.items()}


def measure(detectors: dict[str, DetectorSettings], samples: list[Sample]) -> dict[str, dict[str, float]]:
    """Each detector's figures on the samples. As many detectors run at once as there are cores,
    each in one thread as in bench/accuracy.py, started in the given order (put the slowest first
    so that they end together); the camera frame that bench times is skipped."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {name: pool.submit(evaluate, settings, ANONYMIZER, samples, frame_runs=0)
                   for name, settings in detectors.items()}
        return {name: figures(future.result()) for name, future in futures.items()}


def shipped() -> dict[str, DetectorSettings]:
    """Every profile as shipped."""
    return {name: DetectorSettings(profile=name) for name in DETECTOR_PROFILES}


def record_figures(data: Path, write: bool) -> dict[str, Any]:
    """Measure every shipped profile on a fresh slice and, if ``write``, store the result in ``RECORD``."""
    samples = pick_slice(load_samples(data, None))
    detectors = shipped()
    measured = measure(detectors, samples)
    record = {
        "about": "Accuracy of each shipped detector profile on a fixed slice of faces-dev, checked by "
        f"tests/test_accuracy_gate.py: a profile fails when privacy recall or AP is more than {MAX_DROP:g} "
        "points (percent) under its figure here. Re-record after an intended change with record_command.",
        "record_command": RECORD_COMMAND,
        "recorded": {
            "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": cpu(),
            "python": platform.python_version(),
            "packages": {name: version(name) for name in PACKAGES},
        },
        "scoring": f"bench/accuracy.py, in percent: privacy_recall = share of labelled faces at least "
        f"{PRIVACY_COVER:.0%} covered by the regions hidden at padding {ANONYMIZER.padding:g}, "
        f"{ANONYMIZER.shape.value}; privacy_recall_32 = the same for faces at least 32 px tall; ap = VOC all-point "
        f"at IoU {IOU_MATCH:g} over detections from score {RANKING_FLOOR:g}; recall and precision at IoU "
        f"{IOU_MATCH:g} at the profile's threshold; ignore boxes count neither way",
        "slice": {
            "rule": f"about {SLICE_IMAGES} images of faces-dev: each source gets its share in proportion to its "
            "size (at least one image), evenly spaced through it in annotations.json order",
            "images": len(samples),
            "faces": sum(len(sample.faces) for sample in samples),
            "by_source": dict(Counter(sample.source for sample in samples)),
            "files": [sample.path.relative_to(data).as_posix() for sample in samples],
        },
        "profiles": {
            name: {"detector": describe(settings), "threshold": settings.threshold, **measured[name]}
            for name, settings in detectors.items()
        },
    }
    if write:
        RECORD.write_text(json.dumps(record, indent=2) + "\n")
    return record


# -- the gate ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def record() -> dict[str, Any]:
    """The recorded figures and the slice they were measured on."""
    return json.loads(RECORD.read_text())


@pytest.fixture(scope="module")
def measured(record: dict[str, Any], faces_dev: list[dict]) -> dict[str, dict[str, float]]:
    """The figures of every shipped profile and of the realtime profile in float, on the recorded
    slice (the slowest, accurate, first); ``faces_dev`` fails the tests with a hint when the data is
    missing."""
    profiles = shipped()
    detectors = {"accurate": profiles.pop("accurate"), FLOAT: DetectorSettings(profile="realtime", int8=False),
                 **profiles}
    return measure(detectors, recorded_slice(record, FACES_DEV))


def _show(values: dict[str, float]) -> str:
    """The figures on one line, e.g. ``privacy_recall 83.01, privacy_recall_32 95.00, ...``."""
    keys = ("privacy_recall", "privacy_recall_32", "ap", "recall", "precision")
    return ", ".join(f"{key} {values[key]:.2f}" for key in keys)


@pytest.mark.parametrize("profile", list(DETECTOR_PROFILES))
def test_a_profile_keeps_its_recorded_accuracy(
    profile: str, record: dict[str, Any], measured: dict[str, dict[str, float]]
) -> None:
    assert profile in record["profiles"], f"no recorded figures for profile {profile!r}; record them: {RECORD_COMMAND}"
    was, now = record["profiles"][profile], measured[profile]
    drops = [f"{key} {was[key]:.2f} -> {now[key]:.2f}" for key in GATED if was[key] - now[key] > MAX_DROP]
    assert not drops, (
        f"{profile} lost more than {MAX_DROP:g} points: {'; '.join(drops)}.\n"
        f"  measured: {_show(now)}\n"
        f"  recorded: {_show(was)} ({record['recorded']['date']}, {record['recorded']['cpu']})\n"
        f"  if the change is intended, re-record: {RECORD_COMMAND}"
    )


def test_the_realtime_profile_finds_the_same_faces_in_int8_as_in_float(measured: dict[str, dict[str, float]]) -> None:
    detector = create_detector(DetectorSettings(profile="realtime"))
    detector.close()
    assert detector.int8, "the int8 model could not be made: the comparison would be float against float"
    int8, float_ = measured["realtime"], measured[FLOAT]
    gaps = [f"{key} {float_[key]:.2f} -> {int8[key]:.2f}" for key in GATED
            if abs(int8[key] - float_[key]) > INT8_FLOAT_GAP]
    assert not gaps, (
        f"int8 differs from float by more than {INT8_FLOAT_GAP:g} point: {'; '.join(gaps)}.\n"
        f"  int8:  {_show(int8)}\n  float: {_show(float_)}\n  cpu: {cpu()}"
    )


def main() -> None:
    """Print the shipped profiles' figures beside the recorded ones, or with ``--record`` store them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help=f"write the figures to {RECORD.relative_to(ROOT)}")
    args = parser.parse_args()
    old = json.loads(RECORD.read_text())["profiles"] if RECORD.exists() else {}
    fresh = record_figures(FACES_DEV, write=args.record)
    print(f"{fresh['slice']['images']} images, {fresh['slice']['faces']} faces of {FACES_DEV}")
    for name, values in fresh["profiles"].items():
        print(f"{values['detector']}, {values['threshold']:g}: {_show(values)}")
        if name in old:
            print(f"  previously recorded: {_show(old[name])}")
    if args.record:
        print(f"wrote {RECORD}")


if __name__ == "__main__":
    main()
