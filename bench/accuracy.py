"""Detector accuracy on the labelled faces-dev set: recall, privacy recall, precision, AP and speed.

Usage: ``python bench/accuracy.py [--all | --profile NAME ... | --backend NAME ...] [--threshold T]
[--scale S] [--padding P] [--padding-below B] [--shape box|ellipse] [--limit N] [--data DIR] [--markdown]``.

``--all`` measures every profile of ``detector.profile`` (fast, accurate, realtime) and, for
comparison, the rows of issue 6's table that they replace: CenterFace in float at scale 1
(threshold 0.3) and 2 (threshold 0.2); the fast profile is its MediaPipe row. Without options,
the configured still-image detector.
Times are one ``detect()`` call in one thread; the machine is shared, so compare the rows of one
run with each other rather than with another run.

Each detector runs once per image at a low score floor. AP comes from that full ranking; the other
figures keep the detections scoring at least the operating threshold. Because matching is greedy in
score order, the matches of those detections are exactly the first part of the full matching.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from pydantic import ValidationError

from machine import cpu
from streamer.config import DETECTOR_PROFILES, AnonymizerSettings, ConfigError, DetectorSettings, Shape, load_settings
from streamer.faces.anonymizer import coverage_mask
from streamer.faces.detection import Face, clip_box
from streamer.faces.detectors import BACKENDS, create_detector

Box = tuple[float, float, float, float]

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "faces-dev"
IOU_MATCH = 0.5  # a detection and a face (or ignore box) match from this IoU up
IGNORE_INSIDE = 0.5  # share of a detection's area inside an ignore box that makes it ignored
PRIVACY_COVER = 0.8  # share of a face's area that must be hidden for the face to count as hidden
RANKING_FLOOR = 0.05  # detectors run at min(this, threshold) so that AP sees the full ranking
FRAME_SIZE = (1920, 1080)  # the first image, resized to this, times one camera frame
FRAME_RUNS = 10
BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("<16 px", 0.0, 16.0),
    ("16-32 px", 16.0, 32.0),
    ("32-64 px", 32.0, 64.0),
    (">=64 px", 64.0, math.inf),
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One annotated image; boxes are clipped to the image."""

    path: Path
    source: str  # the collection it comes from: mask, wider_416, wider_full or dlib
    width: int
    height: int
    faces: list[Box]
    ignore: list[Box]


@dataclass(slots=True)
class Tally:
    """Outcomes collected over the images for one backend."""

    face_heights: list[float] = field(default_factory=list)
    face_recalled: list[bool] = field(default_factory=list)
    face_hidden: list[bool] = field(default_factory=list)
    det_scores: list[float] = field(default_factory=list)  # non-ignored detections at the floor
    det_tp: list[bool] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Row:
    """Recall figures for one group of faces."""

    label: str
    faces: int
    recall: float
    privacy_recall: float


@dataclass(frozen=True, slots=True)
class Report:
    """The figures for one backend at its operating threshold."""

    backend: str
    threshold: float
    rows: list[Row]  # "all" first, then the height buckets
    hidden_32: float  # privacy recall of the faces at least 32 px tall
    tp: int
    fp: int
    ap: float
    ms_per_image: float
    ms_per_frame: float  # one 1920x1080 frame

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def label(self) -> str:
        return f"{self.backend}, {self.threshold:g}"


def describe(settings: DetectorSettings, prefix: str | None = None) -> str:
    """A short name for a detector's settings, e.g. ``accurate: centerface int8 x2.5 <=2.5MP``."""
    if settings.backend == "mediapipe":
        what = "mediapipe"
    else:
        what = f"centerface {'int8' if settings.int8 else 'float'} x{settings.scale:g}"
        if settings.max_pixels:
            what += f" <={settings.max_pixels / 1e6:g}MP"
        if settings.coarse_pixels:
            what += f" +{settings.coarse_pixels / 1e6:g}MP"
    return f"{prefix or settings.profile}: {what}"


def load_samples(data: Path, limit: int | None) -> list[Sample]:
    """The images listed in ``data/annotations.json``, the first ``limit`` of them if given."""
    entries = json.loads((data / "annotations.json").read_text())["images"][:limit]
    samples = []
    for entry in entries:
        width, height = int(entry["width"]), int(entry["height"])
        samples.append(
            Sample(
                path=data / entry["file"],
                source=entry["source"],
                width=width,
                height=height,
                faces=[clip_box(*box, width, height) for box in entry["faces"]],
                ignore=[clip_box(*box, width, height) for box in entry.get("ignore", [])],
            )
        )
    return samples


def read_rgb(sample: Sample) -> np.ndarray:
    """The sample's image as RGB ``uint8``; raises if it is missing or not the annotated size."""
    bgr = cv2.imread(str(sample.path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read image {sample.path}")
    if bgr.shape[:2] != (sample.height, sample.width):
        raise SystemExit(f"{sample.path}: size {bgr.shape[1]}x{bgr.shape[0]}, annotated {sample.width}x{sample.height}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _corners(boxes: list[Box]) -> np.ndarray:
    """(N, 4) array of x0, y0, x1, y1."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([arr[:, :2], arr[:, :2] + arr[:, 2:]], axis=1)


def overlaps(a: list[Box], b: list[Box]) -> tuple[np.ndarray, np.ndarray]:
    """(IoU, intersection / area of the ``a`` box), each of shape (len(a), len(b))."""
    ca, cb = _corners(a), _corners(b)
    iw = np.clip(np.minimum(ca[:, None, 2], cb[None, :, 2]) - np.maximum(ca[:, None, 0], cb[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ca[:, None, 3], cb[None, :, 3]) - np.maximum(ca[:, None, 1], cb[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = ((ca[:, 2] - ca[:, 0]) * (ca[:, 3] - ca[:, 1]))[:, None]
    area_b = ((cb[:, 2] - cb[:, 0]) * (cb[:, 3] - cb[:, 1]))[None, :]
    union = area_a + area_b - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    inside = np.divide(inter, area_a, out=np.zeros_like(inter), where=area_a > 0)
    return iou, inside


def match(
    detections: list[Face], faces: list[Box], ignore: list[Box]
) -> tuple[list[tuple[float, bool]], list[float | None]]:
    """Greedy matching in score order.

    Returns (score, is true positive) for each detection not ignored, and for each face the score
    of the detection matched to it, or None.
    """
    ranked = sorted(detections, key=lambda face: face.score, reverse=True)
    boxes = [det.box for det in ranked]
    face_iou, _ = overlaps(boxes, faces)
    ignore_iou, ignore_inside = overlaps(boxes, ignore)
    matched: list[float | None] = [None] * len(faces)
    outcomes: list[tuple[float, bool]] = []
    for i, det in enumerate(ranked):
        candidates = np.where([score is None for score in matched], face_iou[i], -1.0)
        best = int(np.argmax(candidates)) if len(faces) else -1
        if best >= 0 and candidates[best] >= IOU_MATCH:
            matched[best] = det.score
            outcomes.append((det.score, True))
        elif not (np.any(ignore_iou[i] >= IOU_MATCH) or np.any(ignore_inside[i] >= IGNORE_INSIDE)):
            outcomes.append((det.score, False))
    return outcomes, matched


def hidden_share(mask: np.ndarray, box: Box) -> float:
    """Share of the box's area (fractional pixels weighted by overlap) that ``mask`` covers."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return 0.0
    xs = np.arange(math.floor(x), math.ceil(x + w))
    ys = np.arange(math.floor(y), math.ceil(y + h))
    wx = np.minimum(xs + 1, x + w) - np.maximum(xs, x)
    wy = np.minimum(ys + 1, y + h) - np.maximum(ys, y)
    window = mask[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1].astype(np.float64)
    return float(wy @ window @ wx) / (w * h)


def average_precision(scores: list[float], tp: list[bool], n_faces: int) -> float:
    """VOC all-point interpolated AP of the ranking given by ``scores``."""
    if not n_faces:
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(tp, dtype=np.float64)[order]
    cum_tp, cum_fp = np.cumsum(hits), np.cumsum(1.0 - hits)
    recall = np.concatenate([[0.0], cum_tp / n_faces, [1.0]])
    precision = np.concatenate([[0.0], cum_tp / np.maximum(cum_tp + cum_fp, 1e-12), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def evaluate(
    settings: DetectorSettings,
    anonymizer: AnonymizerSettings,
    samples: list[Sample],
    label: str | None = None,
    frame_runs: int = FRAME_RUNS,
) -> Report:
    """Run one backend over the samples and compute its figures; ``frame_runs`` times one camera
    frame (0: not timed, ``ms_per_frame`` is NaN, for callers that only want the accuracy)."""
    detector = create_detector(settings)
    floor = min(RANKING_FLOOR, settings.threshold)
    tally = Tally()
    try:
        if samples:
            detector.detect(read_rgb(samples[0]), floor)  # warm-up, not timed
        for sample in samples:
            image = read_rgb(sample)
            start = time.perf_counter()
            detections = detector.detect(image, floor)
            tally.seconds.append(time.perf_counter() - start)
            outcomes, matched = match(detections, sample.faces, sample.ignore)
            tally.det_scores += [score for score, _ in outcomes]
            tally.det_tp += [hit for _, hit in outcomes]
            kept = [det for det in detections if det.score >= settings.threshold]
            mask = coverage_mask(kept, sample.width, sample.height, anonymizer)
            for box, score in zip(sample.faces, matched):
                tally.face_heights.append(box[3])
                tally.face_recalled.append(score is not None and score >= settings.threshold)
                tally.face_hidden.append(hidden_share(mask, box) >= PRIVACY_COVER)
        frame = cv2.resize(read_rgb(samples[0]), FRAME_SIZE, interpolation=cv2.INTER_LINEAR) if samples else None
        frame_seconds = []
        for _ in range(frame_runs if frame is not None else 0):
            start = time.perf_counter()
            detector.detect(frame, settings.threshold)
            frame_seconds.append(time.perf_counter() - start)
    finally:
        detector.close()
    report = summarize(settings, tally, label or describe(settings))
    # the first call at a new size pays for memory: the median of the runs
    return replace(report, ms_per_frame=1000.0 * float(np.median(frame_seconds)) if frame_seconds else float("nan"))


def summarize(settings: DetectorSettings, tally: Tally, label: str) -> Report:
    """Turn a tally into recall rows, precision, AP and timing."""
    heights = np.asarray(tally.face_heights, dtype=np.float64)
    recalled = np.asarray(tally.face_recalled, dtype=bool)
    hidden = np.asarray(tally.face_hidden, dtype=bool)
    groups = [("all", np.ones_like(recalled))] + [
        (label, (heights >= low) & (heights < high)) for label, low, high in BUCKETS
    ]
    rows = [
        Row(label, int(sel.sum()), _share(recalled[sel]), _share(hidden[sel])) for label, sel in groups
    ]
    scores = np.asarray(tally.det_scores, dtype=np.float64)
    hits = np.asarray(tally.det_tp, dtype=bool)
    operating = scores >= settings.threshold
    return Report(
        backend=label,
        threshold=settings.threshold,
        rows=rows,
        hidden_32=_share(hidden[heights >= 32]),
        tp=int((hits & operating).sum()),
        fp=int((~hits & operating).sum()),
        ap=average_precision(tally.det_scores, tally.det_tp, len(recalled)),
        ms_per_image=1000.0 * float(np.mean(tally.seconds)) if tally.seconds else float("nan"),
        ms_per_frame=float("nan"),
    )


def _share(flags: np.ndarray) -> float:
    return float(flags.mean()) if flags.size else float("nan")


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"


def print_block(report: Report, anonymizer: AnonymizerSettings, images: int) -> None:
    """Plain-text figures for one backend."""
    print(f"== {report.backend}, threshold {report.threshold:g} "
          f"(privacy: padding {anonymizer.padding:g}, {anonymizer.padding_below:g} of it below, {anonymizer.shape.value})")
    print(f"  {'face height':<12} {'faces':>6} {'recall':>8} {'privacy recall':>15}")
    for row in report.rows:
        print(f"  {row.label:<12} {row.faces:>6} {_pct(row.recall):>8} {_pct(row.privacy_recall):>15}")
    print(f"  privacy recall >=32 px {_pct(report.hidden_32)}")
    print(f"  precision {_pct(report.precision)} (TP {report.tp}, FP {report.fp})")
    print(f"  AP@0.5 {_pct(report.ap)}")
    print(f"  {report.ms_per_image:.1f} ms/image (mean detect() over {images} images, one process); "
          f"{report.ms_per_frame:.1f} ms for a {FRAME_SIZE[0]}x{FRAME_SIZE[1]} frame (median of {FRAME_RUNS})")
    print()


def print_markdown(reports: list[Report]) -> None:
    """The summary table (one row per backend) and the by-height table."""
    print("| detector, threshold | recall | privacy recall | privacy recall >=32 px | precision | AP "
          f"| recall >=64 px | ms/image | ms/{FRAME_SIZE[0]}x{FRAME_SIZE[1]} frame |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in reports:
        overall, largest = r.rows[0], r.rows[-1]
        print(f"| {r.label} | {_pct(overall.recall)} | {_pct(overall.privacy_recall)} | {_pct(r.hidden_32)} "
              f"| {_pct(r.precision)} | {_pct(r.ap)} | {_pct(largest.recall)} | {r.ms_per_image:.1f} "
              f"| {r.ms_per_frame:.0f} |")
    print()
    print("| detector, threshold | face height | faces | recall | privacy recall |")
    print("|---|---|---|---|---|")
    for r in reports:
        for row in r.rows:
            print(f"| {r.label} | {row.label} | {row.faces} | {_pct(row.recall)} | {_pct(row.privacy_recall)} |")
    print()


def print_provenance(command: str, started: datetime) -> None:
    """The command line, the machine and the date, so that the output can be reproduced."""
    print(f"command: {command}")
    print(f"machine: {cpu()}, date: {started.isoformat(timespec='seconds')}")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[tuple[str, DetectorSettings]], AnonymizerSettings]:
    """Command-line options merged with the configured detector and anonymizer settings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--all", action="store_true", help="every profile, and the rows of issue 6 they replace")
    choice.add_argument("--profile", nargs="+", metavar="NAME", help=f"detector profile(s): {', '.join(DETECTOR_PROFILES)}")
    choice.add_argument("--backend", nargs="+", metavar="NAME", help="the configured detector with this backend")
    parser.add_argument("--threshold", type=float, help="operating score threshold; default: the detector's")
    parser.add_argument("--scale", type=float, help="detector.scale (centerface); default: the detector's")
    parser.add_argument("--coarse-pixels", type=int, help="detector.coarse_pixels (centerface): a second, coarse pass")
    parser.add_argument("--float", dest="int8", action="store_false", default=None,
                        help="centerface: run the float model instead of the profile's int8")
    parser.add_argument("--padding", type=float, help="anonymizer padding; default: the configured one")
    parser.add_argument("--padding-below", type=float,
                        help="share of the added height below the box (anonymizer.padding_below); default: the configured one")
    parser.add_argument("--shape", choices=[shape.value for shape in Shape], help="anonymizer shape; default: configured")
    parser.add_argument("--limit", type=int, metavar="N", help="use only the first N images")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help=f"default: {DEFAULT_DATA}")
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    unknown = sorted(set(args.backend or ()) - set(BACKENDS)) + sorted(set(args.profile or ()) - set(DETECTOR_PROFILES))
    if unknown:
        parser.error(f"unknown backend(s) or profile(s) {', '.join(unknown)} (backends: {', '.join(sorted(BACKENDS))}; "
                     f"profiles: {', '.join(DETECTOR_PROFILES)})")
    try:
        settings = load_settings()
        base = settings.detector.model_dump()
        shared = {"threads": settings.detector.threads, "model_dir": settings.detector.model_dir}
        if args.all:
            candidates = [(None, {"profile": name, **shared}) for name in DETECTOR_PROFILES] + [
                # what the profiles replace: issue 6's rows
                ("before", {"profile": "accurate", "int8": False, "scale": 1.0, "max_pixels": 0, "threshold": 0.3,
                            "coarse_pixels": 0, **shared}),
                ("before", {"profile": "accurate", "int8": False, "scale": 2.0, "max_pixels": 0, "coarse_pixels": 0,
                            **shared}),
            ]
        elif args.profile:
            candidates = [(None, {"profile": name, **shared}) for name in args.profile]
        elif args.backend:
            candidates = [(None, base | {"backend": name}) for name in args.backend]
        else:
            candidates = [(None, base)]
        overrides = {"threshold": args.threshold, "scale": args.scale, "int8": args.int8, "coarse_pixels": args.coarse_pixels}
        detectors = []
        for prefix, candidate in candidates:
            detector = DetectorSettings.model_validate(candidate | {k: v for k, v in overrides.items() if v is not None})
            detectors.append((describe(detector, prefix), detector))
        overrides = {"padding": args.padding, "padding_below": args.padding_below, "shape": args.shape}
        anonymizer = AnonymizerSettings.model_validate(
            settings.anonymizer.model_dump() | {k: v for k, v in overrides.items() if v is not None}
        )
    except (ConfigError, ValidationError) as exc:
        parser.error(str(exc))
    return args, detectors, anonymizer


def main(argv: list[str] | None = None) -> None:
    """Evaluate each requested backend and print the figures."""
    argv = sys.argv[1:] if argv is None else argv
    args, detectors, anonymizer = parse_args(argv)
    command = shlex.join(["python", sys.argv[0], *argv])
    started = datetime.now().astimezone()
    samples = load_samples(args.data, args.limit)
    print_provenance(command, started)
    print(f"data: {args.data} ({len(samples)} images, {sum(len(s.faces) for s in samples)} faces)")
    print()
    reports = []
    for label, settings in detectors:
        report = evaluate(settings, anonymizer, samples, label)
        print_block(report, anonymizer, len(samples))
        reports.append(report)
    if args.markdown:
        print_markdown(reports)
    print_provenance(command, datetime.now().astimezone())


if __name__ == "__main__":
    main()
