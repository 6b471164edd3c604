"""The package's import contracts (pyproject.toml, ``[tool.importlinter]``) hold: raw camera frames
stay in ``streamer.live`` (outputs and HTTP import its hub, never ``sources`` or ``pipeline``),
``streamer.stills`` imports nothing of live cameras, and ``streamer.faces`` imports none of the
packages above it."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    # This tree's streamer, not another one an editable install might point at.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, env={**os.environ, "PYTHONPATH": path},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
