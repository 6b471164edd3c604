"""Fuzz longer than CI does: the same tests as ``tests/test_fuzz.py`` (the HTTP API from its OpenAPI
schema with schemathesis, the image decoders with hypothesis), with more examples each.

    .venv/bin/python bench/fuzz.py --examples 2000

It prints the machine, the command and pytest's summary; any failure shows the smallest input
that hypothesis found for it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per API operation and per decoder test")
    args = parser.parse_args()
    print(f"machine: {cpu()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz.py"],
        cwd=ROOT, env={**os.environ, "FUZZ_EXAMPLES": str(args.examples)},
    )
    print(f"{args.examples} examples each, {time.monotonic() - started:.0f} s")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
