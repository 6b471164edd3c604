"""The audit log: one JSON line per login, failed login, stream or snapshot and admin change, saying
who (user, address) looked at or changed what, and when. Never pixels, passwords or tokens.

Lines go to the ``streamer.audit`` logger (the process's log) and, when ``auth.audit_log`` names a
file, are appended to that file as bare JSON lines.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("streamer.audit")


def audit(event: str, **fields: Any) -> None:
    line = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event, **fields}
    log.info("%s", json.dumps(line, separators=(",", ":")))


def append_to(path: str) -> None:
    """Also append every audit line to the file at ``path`` (made readable by its owner only)."""
    if any(isinstance(h, logging.FileHandler) and h.baseFilename == os.path.abspath(path) for h in log.handlers):
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    os.chmod(path, 0o600)
    log.addHandler(handler)
