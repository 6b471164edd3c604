"""What a figure was measured on: the CPU model, its cores and the vector extensions that decide
which kernels onnxruntime, OpenCV and MediaPipe run (and so their speed; int8 results are made
the same on every x86-64 CPU, see ``streamer/faces/detectors/int8.py``)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

EXTENSIONS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni")


def cpu() -> str:
    """E.g. ``AMD EPYC, 2 cores, avx2, avx512f, avx512_vnni``."""
    info = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in info.read_text().splitlines() if info.exists() else ():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return ", ".join(
        [fields.get("model name") or platform.machine(), f"{os.cpu_count()} cores", *(f for f in EXTENSIONS if f in flags)]
    )
