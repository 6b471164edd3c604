"""Measure CenterFace's activation ranges for the int8 detector and write them to streamer/faces/detectors/centerface_ranges.py.

Usage: ``python bench/calibrate.py [--data DIR] [--images 40] [--scale 2]``. It runs the float model
over every 13th faces-dev photo (the first ``--images`` of them), resized by ``--scale`` as the
accurate profile does, and records each tensor's min and max (onnxruntime's MinMax calibrator).
Run it again only if the prepared model changes; the loader refuses ranges that do not fit it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from accuracy import DEFAULT_DATA, load_samples, read_rgb  # noqa: E402

from streamer.faces.detectors.int8 import to_opset  # noqa: E402
from streamer.models import CENTERFACE_INPUT, centerface_path  # noqa: E402
from streamer.offline import quiet_dependencies  # noqa: E402

TARGET = ROOT / "streamer" / "faces" / "detectors" / "centerface_ranges.py"


def main() -> None:
    quiet_dependencies()  # before onnxruntime is imported: no telemetry
    import onnx
    from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--scale", type=float, default=2.0)
    args = parser.parse_args()
    samples = load_samples(args.data, None)[::13][: args.images]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._samples = iter(samples)

        def get_next(self):
            sample = next(self._samples, None)
            if sample is None:
                return None
            rgb = read_rgb(sample)
            w = max(32, round(sample.width * args.scale) // 32 * 32)
            h = max(32, round(sample.height * args.scale) // 32 * 32)
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
            return {CENTERFACE_INPUT: rgb.transpose(2, 0, 1)[None].astype(np.float32)}

    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "centerface13.onnx"
        onnx.save(to_opset(centerface_path().read_bytes()), str(model_path))
        calibrator = create_calibrator(
            model_path, None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
        )
        calibrator.collect_data(Reader())
        data = calibrator.compute_data().data
    lines = [
        '"""Activation ranges of the CenterFace model for int8 quantization: written by bench/calibrate.py."""',
        "",
        f"# {shlex.join(['python', 'bench/calibrate.py', *sys.argv[1:]])}: {len(samples)} images",
        "RANGES: dict[str, tuple[float, float]] = {",
    ]
    for name in sorted(data):
        lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in data[name].range_value)
        lines.append(f"    {name!r}: ({lo!r}, {hi!r}),")
    lines.append("}")
    TARGET.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(data)} ranges to {TARGET}")


if __name__ == "__main__":
    main()
