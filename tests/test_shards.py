"""Cameras spread over shards with no coordinator (``streamer.shards``): a stable map that every
replica computes alike, and clear errors for a shard that cannot be."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from conftest import ROOT
from streamer.config import ConfigError, load_settings
from streamer.shards import camera_map, parse_shard, shard_of

NAMES = [f"camera-{n}" for n in range(1000)]


def test_the_map_is_pinned_so_an_upgrade_moves_no_camera():
    # The assignment is part of the deployment: replicas of two versions must agree on it.
    assert [shard_of(name, 2) for name in ("door", "lobby", "yard", "shop")] == [0, 0, 1, 1]
    assert [shard_of(name, 3) for name in ("door", "lobby", "yard", "shop", "roof")] == [0, 2, 1, 1, 2]


def test_cameras_spread_evenly():
    counts = Counter(shard_of(name, 4) for name in NAMES)
    assert sorted(counts) == [0, 1, 2, 3]
    assert all(200 <= count <= 300 for count in counts.values()), counts


def test_a_new_shard_takes_cameras_only_for_itself():
    moved = [name for name in NAMES if shard_of(name, 3) != shard_of(name, 4)]
    assert all(shard_of(name, 4) == 3 for name in moved)
    assert 200 <= len(moved) <= 300  # about a quarter, not most of them as with hash % N


def test_shard_syntax():
    assert parse_shard("1/2") == (1, 2)
    assert parse_shard("ordinal/3", hostname="streamer-cameras-2") == (2, 3)
    for text, problem in [
        ("3/2", "shard 3 does not exist"), ("0/0", "at least 1"), ("one/2", "is not I/N"),
        ("ordinal/3", "does not end in -<ordinal>"), ("ordinal/2", "shard 2 does not exist"),
    ]:
        with pytest.raises(ValueError, match=problem):
            parse_shard(text, hostname="streamer-cameras-2" if text == "ordinal/2" else "vm")


def test_bad_shard_settings_name_the_key(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAMER_SERVER__SHARD", "2/2")
    with pytest.raises(ConfigError, match=r"server\.shard: .*shard 2 does not exist"):
        load_settings()
    monkeypatch.setenv("STREAMER_SERVER__SHARD", "1/2")
    monkeypatch.setenv("STREAMER_SERVER__SHARD_URL", "http://cameras-{ordinal}:8000")
    with pytest.raises(ConfigError, match=r"server\.shard_url: .*only \{shard\}"):
        load_settings()


def test_the_map_seen_from_one_shard(tmp_path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "cameras.yaml"
    config.write_text(
        "cameras:\n"
        + "".join(f"  - {{name: {name}, source: rtsp://192.0.2.1/{name}}}\n" for name in ("door", "lobby", "yard"))
        + "  - {name: shop, source: rtsp://192.0.2.1/shop, enabled: false}\n"
    )
    monkeypatch.setenv("STREAMER_SERVER__SHARD", "1/2")
    monkeypatch.setenv("STREAMER_SERVER__SHARD_URL", "http://streamer-cameras-{shard}.streamer-cameras:8000")
    placed = {p.name: p for p in camera_map(load_settings(config))}
    assert placed.keys() == {"door", "lobby", "yard"}  # a disabled camera runs nowhere
    assert [(p.shard, p.local) for p in placed.values()] == [(0, False), (0, False), (1, True)]
    assert placed["yard"].url == "http://streamer-cameras-1.streamer-cameras:8000"


def test_serve_refuses_a_shard_that_does_not_exist():
    result = subprocess.run(
        [sys.executable, "-m", "streamer", "serve", "--no-cameras", "--shard", "3/2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "server.shard" in result.stderr and "shard 3 does not exist" in result.stderr
