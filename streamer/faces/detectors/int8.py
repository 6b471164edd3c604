"""CenterFace in 8-bit integers: the prepared float model, quantized in memory when a detector loads.

The quantization is static (QDQ, weights per channel): every activation's range was measured once,
by ``bench/calibrate.py`` over 40 faces-dev photos upscaled 2x, and is stored in
``centerface_ranges.py``, so loading needs no images and gives the same model every time. It takes
about a second and is done once per process; every detector of that process shares the bytes.

Weights use 7 bits (``reduce_range``), and that is what makes the results the same on every x86-64
CPU. onnxruntime multiplies uint8 activations by int8 weights with VNNI where the CPU has it
(exact 32-bit sums) and otherwise with AVX2's ``vpmaddubsw``, which adds pairs of products into
16 bits and saturates when two large 8-bit products meet: on an AVX2 CPU without VNNI the full-range
model scored faces differently (by up to 0.4 on the heatmap) and lost recall. With weights in
[-64, 64] a pair of products stays under 2^15, so both paths compute the same integers; checked
bit for bit against an AVX2-only CPU emulated by QEMU (see README, Accuracy).
"""

from __future__ import annotations

import threading

OPSET = 13  # QDQ with per-channel weights needs DequantizeLinear's axis attribute (opset 13)

_lock = threading.Lock()
_cache: dict[str, bytes] = {}


def to_opset(model_bytes: bytes):
    """The float model as an ``onnx.ModelProto`` at ``OPSET``: the graph the ranges were measured on."""
    import onnx
    from onnx import version_converter

    return version_converter.convert_version(onnx.load_from_string(model_bytes), OPSET)


def quantize(model_bytes: bytes, key: str) -> bytes:
    """The int8 model for the prepared float model ``model_bytes`` (whose sha256 is ``key``)."""
    with _lock:
        cached = _cache.get(key)
        if cached is None:
            cached = _cache[key] = _quantize(model_bytes)
        return cached


def _quantize(model_bytes: bytes) -> bytes:
    import numpy as np
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    from .centerface_ranges import RANGES

    model = to_opset(model_bytes)
    names = {name for node in model.graph.node for name in (*node.input, *node.output)}
    missing = sorted(set(RANGES) - names)
    if missing:
        raise ValueError(f"int8: the model has no tensors {missing[:3]}...; re-run bench/calibrate.py")
    ranges = TensorsData(
        CalibrationMethod.MinMax,
        {name: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for name, (lo, hi) in RANGES.items()},
    )
    # The three BatchNormalizations after the upsampling stay in float: onnxruntime cannot quantize
    # them per channel (it warns), and quantizing them gains nothing measurable.
    ops = sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - {"BatchNormalization"})
    quantizer = QDQQuantizer(
        model,
        True,  # per_channel
        True,  # reduce_range: 7-bit weights, no 16-bit saturation on AVX2 (see the module docstring)
        QuantType.QInt8,  # weights
        QuantType.QUInt8,  # activations
        ranges,
        [],  # nodes_to_quantize: all
        [],  # nodes_to_exclude
        ops,
        {},
    )
    quantizer.quantize_model()
    return quantizer.model.model.SerializeToString()
