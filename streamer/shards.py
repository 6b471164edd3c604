"""Which replica serves which camera, with no coordinator: every replica computes the same map.

``server.shard: I/N`` makes a server run only the cameras whose names hash to shard ``I`` of
``N``. The hash is rendezvous hashing over SHA-1 (the same on every machine and Python, unlike
``hash()``): each camera goes to the shard with the highest digest of ``"<shard>/<name>"``, so
a restarted replica takes back the same cameras, and going from N to N+1 shards moves only the
cameras that the new shard wins (about 1/(N+1) of them), never one between two old shards.
"""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings

ORDINAL = "ordinal"  # "ordinal/N": the shard is the host name's trailing number (a StatefulSet pod's)
_SHARD = re.compile(rf"^(\d+|{ORDINAL})/(\d+)$")
_HOST_ORDINAL = re.compile(r"-(\d+)$")


def shard_of(name: str, count: int) -> int:
    """The shard (0 <= shard < count) that serves the camera ``name``."""
    return max(range(count), key=lambda shard: hashlib.sha1(f"{shard}/{name}".encode()).digest())


def parse_shard(text: str, hostname: str | None = None) -> tuple[int, int]:
    """``"I/N"`` (or ``"ordinal/N"``, I taken from ``hostname``, default this host's) as (I, N)."""
    match = _SHARD.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not I/N (e.g. 0/2) or ordinal/N")
    index, count = match[1], int(match[2])
    if count < 1:
        raise ValueError(f"{text!r}: the number of shards must be at least 1")
    if index == ORDINAL:
        hostname = socket.gethostname() if hostname is None else hostname
        ordinal = _HOST_ORDINAL.search(hostname)
        if not ordinal:
            raise ValueError(
                f"{text!r}: the host name {hostname!r} does not end in -<ordinal> as a StatefulSet pod's does"
            )
        index = ordinal[1]
    if int(index) >= count:
        raise ValueError(f"{text!r}: shard {index} does not exist; shards are numbered 0 to {count - 1}")
    return int(index), count


@dataclass(frozen=True)
class Placement:
    name: str
    shard: int
    local: bool
    url: str | None  # the replica serving it, from server.shard_url; None when that is unset


def camera_map(settings: Settings) -> list[Placement]:
    """Where each enabled camera of ``settings`` lives, seen from the replica that ``settings`` configure."""
    index, count = settings.server.shards
    template = settings.server.shard_url
    placed = []
    for camera in settings.cameras:
        if camera.enabled:
            owner = shard_of(camera.name, count)
            url = template.format(shard=owner) if template else None
            placed.append(Placement(camera.name, owner, owner == index, url))
    return placed
