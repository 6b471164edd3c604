"""Keeps third-party libraries from writing files and calling home while streamer runs.

streamer works offline and writes only the files it is asked to. Two of its dependencies would do
otherwise on their own (seen with ``tests/test_offline.py``):

- onnxruntime's official wheels (1.32) start Microsoft's 1DS telemetry when onnxruntime is
  imported: a ``.ses`` session file in TMPDIR, a device id and an SQLite event store in
  ``$XDG_CACHE_HOME/Microsoft/DeveloperTools/.onnxruntime`` (``~/.cache/...``), and uploads to
  Microsoft's collector. ``ORT_DISABLE_TELEMETRY=1`` in the environment before the import turns
  all of it off for the process; ``onnxruntime.disable_telemetry_events()`` cannot: by the time it
  can be called the files are written, and it only drops some events.
- matplotlib, which any ``import mediapipe...`` pulls in (``mediapipe.solutions.drawing_utils``),
  creates ``~/.config/matplotlib`` and writes ``~/.cache/matplotlib/fontlist-*.json`` (after
  scanning the system's fonts) on first import. ``MPLCONFIGDIR`` moves both into the install,
  ``<sys.prefix>/share/streamer/matplotlib``, where ``python -m streamer.offline`` writes the font
  list at install time (``make install`` runs it), so that at run time it is only read.

Both libraries are imported lazily, when a detector is made, so ``create_detector`` calls
``quiet_dependencies()`` before it imports a backend: the CLI, the server, the benchmarks and the
tests all make their detectors there (``bench/calibrate.py``, which imports onnxruntime's
quantizer itself, calls it first).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MATPLOTLIB_DIR = Path(sys.prefix) / "share" / "streamer" / "matplotlib"


def quiet_dependencies() -> None:
    """Turn onnxruntime's telemetry off and send matplotlib's config and cache to ``MATPLOTLIB_DIR``
    (unless ``MPLCONFIGDIR`` is set already). Call it before onnxruntime or mediapipe is imported."""
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("MPLCONFIGDIR", str(MATPLOTLIB_DIR))


def prepare_font_list() -> Path:
    """Write matplotlib's font list into its folder (install time), so that importing matplotlib
    later reads it instead of scanning fonts and writing it; returns the folder."""
    quiet_dependencies()
    import matplotlib.font_manager  # loads the font list, or builds and saves it

    return Path(matplotlib.get_cachedir())


if __name__ == "__main__":
    print(f"matplotlib font list prepared in {prepare_font_list()}")
