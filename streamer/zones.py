"""The zones file (``pipeline.zones_file``): each camera's privacy zones as an admin drew them in
the web UI, kept between runs. An entry for a camera replaces the zones its config gives.

    door:
      - mode: black
        points: [[0.0, 0.0], [0.4, 0.0], [0.4, 0.3]]

A file that exists but cannot be read stops the server at start: zones may be all that stands
between a street and the recording.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from .config import ConfigError, ZoneSettings, read_mapping

_ZONES = TypeAdapter(dict[str, tuple[ZoneSettings, ...]])


class ZonesFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> dict[str, tuple[ZoneSettings, ...]]:
        """Zones by camera name; none when the file does not exist yet."""
        if not self.path.exists():
            return {}
        try:
            return _ZONES.validate_python(read_mapping(self.path, "zones file"))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"zones file {self.path}: {problems}") from None

    def save(self, camera: str, zones: tuple[ZoneSettings, ...]) -> None:
        """Keep ``zones`` for ``camera`` (the file is replaced at once, never half-written)."""
        with self._lock:
            every = self.load()
            every[camera] = zones
            data = {name: [zone.model_dump(mode="json") for zone in kept] for name, kept in sorted(every.items())}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.tmp")
            with open(temporary, "w") as out:
                yaml.safe_dump(data, out, sort_keys=False)
            os.replace(temporary, self.path)
