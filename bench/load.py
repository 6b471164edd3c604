"""Load test of the still-image API at 1080p: QPS, latency, errors, CPU and memory under N clients.

Starts ``streamer serve --no-cameras`` as a user would (its own process, a loopback port) for each
detector profile, then drives ``POST /v1/anonymize`` with the 1080p load set of
``bench/make_load_set.py`` (5-15 real faces an image) from this process: one keep-alive HTTP/1.1
connection per client, on a small asyncio client (uvloop) whose own CPU is measured and printed.

Two ways of sending, for each client count:

- ``paced``: the clients together offer a fixed rate (``--rate``, requests a second, spread evenly
  over the connections, as wrk2 does); a connection still waiting for its answer sends its next
  request late, and latency counts from when the request was due, so a slow server cannot hide
  its queue (no coordinated omission).
- ``closed``: every client sends its next request as soon as it has the answer to the last one
  (wrk/ab style): the server's capacity. By Little's law the mean latency is then clients / QPS,
  whatever the server does. A client that gets 503 waits ``Retry-After`` seconds, as a polite
  client does (``--ignore-retry-after`` makes it retry at once).

Every 200 answer is checked: a 1920x1080 JPEG whose ``X-Faces-Detected`` equals the count the same
image got from an idle server. A recall pass per profile (one request at a time) reports
``X-Faces-Detected`` against the labelled faces and the share of labelled faces whose fine detail
is gone from the answer. Server CPU and peak RSS come from ``/proc/<pid>``; "others" is the CPU
the rest of the machine used meanwhile (this machine is shared: ``--quiet 15 --retries 2`` waits
for a quiet moment before each level and runs a level again when others took 15% or more). With
``--runs N`` a summary gives the median and the range of each figure over the runs.

``--compare LABEL=DIR`` also serves the same load from another source tree (say the seed, from
``git archive HEAD | tar -x -C /tmp/seed``) and ``--variant LABEL=KEY=VALUE,...`` from this tree
with other settings, level by level in turn, so that ratios come from one run. Usage:

    python bench/load.py [--profiles fast accurate] [--clients 20 50 100] [--modes paced closed]
                         [--seconds 20] [--warmup 3] [--rate fast=90 accurate=2.5] [--runs 1]
                         [--quiet PERCENT --retries N] [--compare LABEL=DIR] [--variant LABEL=K=V]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import simplejpeg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

sys.path.insert(0, str(ROOT / "tests"))  # the server runner of the tests
from conftest import Server  # noqa: E402
from make_load_set import DEFAULT_OUT, build  # noqa: E402
from machine import cpu  # noqa: E402

# Detector profiles (detector.profile), given to the server as STREAMER_* environment variables.
PROFILES = ("fast", "accurate", "realtime")
# A source tree from before detector profiles (e.g. the seed, for --compare) gets the nearest backend.
LEGACY_PROFILES: dict[str, dict[str, str]] = {
    "fast": {"STREAMER_DETECTOR__BACKEND": "mediapipe"},
    "accurate": {"STREAMER_DETECTOR__BACKEND": "centerface"},
    "realtime": {"STREAMER_DETECTOR__BACKEND": "centerface"},
}
DEFAULT_RATES = {"fast": 90.0, "accurate": 2.5, "realtime": 20.0}
TICKS = os.sysconf("SC_CLK_TCK")
KEEP_ALIVE_S = 4.0  # a connection idle this long is not reused (uvicorn closes idle ones after 5 s)
HIDDEN_DETAIL = 0.2  # a labelled face whose fine detail correlates below this with the input is hidden


# --------------------------------------------------------------------------------------------
# /proc


def proc_counters(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system, every thread) and minor page faults of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS, int(fields[7])


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Start VmHWM again from the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def machine_busy_seconds() -> float:
    """CPU seconds every core has spent busy since boot (all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICKS


def wait_for_quiet(below: float, limit: float) -> float:
    """Wait (up to ``limit`` seconds) until the rest of the machine used under ``below`` % CPU over
    2 s (other users' jobs share this machine); returns the last reading."""
    deadline = time.monotonic() + limit
    while True:
        busy0, own0 = machine_busy_seconds(), os.times()
        time.sleep(2)
        busy1, own1 = machine_busy_seconds(), os.times()
        others = (busy1 - busy0 - (own1.user - own0.user + own1.system - own0.system)) / 2 * 100
        if others < below or time.monotonic() > deadline:
            return others


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --------------------------------------------------------------------------------------------
# the server


def profile_env(root: Path, profile: str) -> dict[str, str]:
    if "DETECTOR_PROFILES" in (root / "streamer" / "config.py").read_text():
        return {"STREAMER_DETECTOR__PROFILE": profile}
    return LEGACY_PROFILES[profile]


# --------------------------------------------------------------------------------------------
# the HTTP client: just enough HTTP/1.1 for keep-alive requests with a Content-Length answer


class Answer:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(status, headers, body)


def make_request(port: int, jpeg: bytes, multipart: bool) -> bytes:
    """The whole request (head and body) for one image, as curl -F or --data-binary sends it."""
    if multipart:
        boundary = uuid.uuid4().hex
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n".encode() + jpeg + f"\r\n--{boundary}--\r\n".encode()
        )
        content_type = f"multipart/form-data; boundary={boundary}"
    else:
        body, content_type = jpeg, "image/jpeg"
    head = (
        f"POST /v1/anonymize HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: streamer-load\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # 200 answers, seconds
    busy_latencies: list[float] = field(default_factory=list)  # 503 answers
    statuses: Counter = field(default_factory=Counter)  # status or "timeout" / "connection"
    ok_in_window: int = 0
    wrong: int = 0  # 200 answers that are not the expected image or face count
    sent: int = 0


@dataclass
class Level:
    clients: int
    mode: str  # paced | closed
    seconds: float
    warmup: float
    rate: float = 0.0  # paced: requests a second, all clients together
    honour_retry_after: bool = True
    timeout: float = 10.0


async def drive(port: int, requests: list[bytes], expected: list[int], level: Level) -> tuple[Tally, float, float]:
    """Run one level; returns the tally and the measured window (start, end) in monotonic time."""
    tally = Tally()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5  # time to open the connections
    window_start = start + level.warmup
    window_end = window_start + level.seconds
    interval = level.clients / level.rate if level.mode == "paced" else 0.0

    async def client(index: int) -> None:
        reader = writer = None
        idle_since = 0.0
        turn = 0
        image = index * 7 % len(requests)
        due = start + index * interval / level.clients
        while True:
            now = loop.time()
            if level.mode == "paced":
                if due >= window_end:
                    break
                if due > now:
                    await asyncio.sleep(due - now)
                begun = due
                due += interval
            else:
                if now < start:
                    await asyncio.sleep(start - now)
                begun = loop.time()
                if begun >= window_end:
                    break
            measured = window_start <= begun < window_end
            sent = loop.time()
            if writer is not None and sent - idle_since > KEEP_ALIVE_S:
                writer.close()  # the server may be closing it (uvicorn keeps idle connections 5 s): as
                reader = writer = None  # browsers and HTTP libraries do, open a new one instead
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.transport.set_write_buffer_limits(high=4 << 20)
                writer.write(requests[image])
                answer = await asyncio.wait_for(read_answer(reader), level.timeout)
            except asyncio.TimeoutError:
                outcome, answer = "timeout", None
            except (OSError, asyncio.IncompleteReadError, ValueError):
                outcome, answer = "connection", None
            else:
                outcome = answer.status
            finished = idle_since = loop.time()
            if answer is None or answer.headers.get("connection", "").lower() == "close":
                if writer is not None:
                    writer.close()
                reader = writer = None
            if measured:
                tally.sent += 1
                tally.statuses[outcome] += 1
                if outcome == 200:
                    tally.latencies.append(finished - begun)
                    if finished <= window_end:
                        tally.ok_in_window += 1
                    if not _correct(answer, expected[image]):
                        tally.wrong += 1
                elif outcome == 503:
                    tally.busy_latencies.append(finished - sent)  # the server's answer time
            if outcome == 503 and level.mode == "closed" and level.honour_retry_after:
                await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
            image = (image + 1) % len(requests)
            turn += 1
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(level.clients)))
    return tally, window_start, window_end


def _correct(answer: Answer, faces: int) -> bool:
    if answer.headers.get("content-type") != "image/jpeg" or answer.body[-2:] != b"\xff\xd9":
        return False
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(answer.body)
    except ValueError:
        return False
    return (width, height) == (1920, 1080) and answer.headers.get("x-faces-detected") == str(faces)


def run_level(server: Server, requests: list[bytes], expected: list[int], level: Level) -> dict:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    rss_peak_reset = reset_peak_rss(server.pid)
    samples: list[int] = []

    async def main() -> tuple[Tally, dict]:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(drive(server.port, requests, expected, level))
        marks: dict = {}
        window_start = loop.time() + 0.5 + level.warmup
        while not task.done():
            now = loop.time()
            samples.append(proc_status_kb(server.pid, "VmRSS"))
            if "server0" not in marks and now >= window_start:
                marks.update(server0=proc_counters(server.pid), client0=os.times(), busy0=machine_busy_seconds(), t0=now)
            if "server1" not in marks and now >= window_start + level.seconds:
                marks.update(server1=proc_counters(server.pid), client1=os.times(), busy1=machine_busy_seconds(), t1=now)
            await asyncio.sleep(0.1)
        tally, _, _ = await task
        if "server1" not in marks:
            marks.update(server1=proc_counters(server.pid), client1=os.times(), busy1=machine_busy_seconds(), t1=loop.time())
        return tally, marks

    tally, marks = runner(main())
    elapsed = marks["t1"] - marks["t0"]
    server_cpu = marks["server1"][0] - marks["server0"][0]
    faults = marks["server1"][1] - marks["server0"][1]
    c0, c1 = marks["client0"], marks["client1"]
    client_cpu = (c1.user - c0.user) + (c1.system - c0.system)
    busy = marks["busy1"] - marks["busy0"]
    lat = np.array(tally.latencies) * 1000
    busy_lat = np.array(tally.busy_latencies) * 1000

    def pct(values: np.ndarray, q: float) -> float:
        return float(np.percentile(values, q)) if len(values) else float("nan")

    return {
        "profile": "",
        "tree": "",
        "clients": level.clients,
        "mode": level.mode,
        "rate": level.rate,
        "qps": tally.ok_in_window / level.seconds,
        "sent": tally.sent,
        "p50": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99), "max": float(lat.max()) if len(lat) else float("nan"),
        "busy_p99": pct(busy_lat, 99),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items(), key=lambda kv: str(kv[0]))},
        "wrong": tally.wrong,
        "server_cpu": server_cpu / elapsed * 100,
        "faults_per_200": faults / tally.ok_in_window if tally.ok_in_window else float("nan"),
        "client_cpu": client_cpu / elapsed * 100,
        "others_cpu": max(0.0, (busy - server_cpu - client_cpu) / elapsed * 100),
        "peak_rss_mb": (proc_status_kb(server.pid, "VmHWM") if rss_peak_reset else max(samples, default=0)) / 1024,
        "sampled_rss_mb": max(samples, default=0) / 1024,
    }


# --------------------------------------------------------------------------------------------
# recall: one request at a time


def fine_detail_kept(before: np.ndarray, after: np.ndarray) -> float:
    """As tests/imaging.py: correlation of fine detail on the inner 80% (1 unchanged, ~0 gone)."""
    h, w = before.shape[:2]
    inner = (slice(h // 10, h - h // 10), slice(w // 10, w - w // 10))

    def fine(pixels: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).astype(np.float64)
        return (grey - cv2.GaussianBlur(grey, (0, 0), 2))[inner].ravel()

    a, b = fine(before), fine(after)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom else 0.0


def recall_pass(port: int, jpegs: list[bytes], images: list[dict]) -> tuple[list[int], dict]:
    """Faces detected per image by an idle server, and recall figures against the labels."""
    detected, hidden, labelled, seconds = [], 0, 0, []

    async def run() -> None:
        nonlocal hidden, labelled
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for jpeg, entry in zip(jpegs, images):
            t0 = time.perf_counter()
            writer.write(make_request(port, jpeg, multipart=False))
            answer = await asyncio.wait_for(read_answer(reader), 120)
            seconds.append(time.perf_counter() - t0)
            if answer.status != 200:
                raise RuntimeError(f"recall pass: {entry['file']} answered {answer.status}: {answer.body[:200]!r}")
            detected.append(int(answer.headers["x-faces-detected"]))
            before = simplejpeg.decode_jpeg(jpeg, colorspace="RGB")
            after = simplejpeg.decode_jpeg(answer.body, colorspace="RGB")
            for x, y, w, h in entry["faces"]:
                x0, y0, x1, y1 = int(x), int(y), int(x + w + 0.999), int(y + h + 0.999)
                if x1 - x0 < 4 or y1 - y0 < 4:
                    continue
                labelled += 1
                hidden += fine_detail_kept(before[y0:y1, x0:x1], after[y0:y1, x0:x1]) < HIDDEN_DETAIL
        writer.close()

    asyncio.run(run())
    return detected, {
        "labelled": sum(len(im["faces"]) for im in images),
        "detected": sum(detected),
        "hidden": hidden / max(1, labelled),
        "idle_ms": float(np.median(seconds)) * 1000,
    }


# --------------------------------------------------------------------------------------------


def fmt_statuses(statuses: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in statuses.items() if k != "200") or "none"


def table_row(r: dict) -> str:
    offered = f"{r['rate']:g}/s" if r["mode"] == "paced" else "as fast as answered"
    tree = f" ({r['tree']})" if r.get("tree") else ""
    per_answer = r["server_cpu"] * 10 / r["qps"] if r["qps"] else float("nan")
    return (
        f"| {r['profile']}{tree} | {r['clients']} | {r['mode']} ({offered}) | {r['qps']:.1f} "
        f"| {r['p50']:.0f} / {r['p95']:.0f} / {r['p99']:.0f} | {r['statuses'].get('200', 0)} "
        f"| {fmt_statuses(r['statuses'])} | {r['busy_p99']:.0f} | {r['wrong']} "
        f"| {r['server_cpu']:.0f} | {per_answer:.1f} | {r['faults_per_200']:.0f} | {r['peak_rss_mb']:.0f} "
        f"| {r['client_cpu']:.0f} | {r['others_cpu']:.0f} |"
    )


HEADER = (
    "| profile | clients | sending | QPS (200s) | latency p50 / p95 / p99 ms | 200s | other answers "
    "| 503 p99 ms | wrong 200s | server CPU % | server CPU ms / 200 | server page faults / 200 | server peak RSS MB "
    "| client CPU % | others CPU % |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def summary(results: list[dict]) -> list[str]:
    """One row per profile, tree, clients and mode: the median of each figure over the runs, and its range."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["profile"], r["tree"], r["clients"], r["mode"], r["rate"]), []).append(r)

    def spread(values: list[float], digits: int = 0) -> str:
        values = sorted(values)
        median = float(np.median(values))
        if len(values) == 1:
            return f"{median:.{digits}f}"
        return f"{median:.{digits}f} ({values[0]:.{digits}f}-{values[-1]:.{digits}f})"

    rows = [
        "| profile | clients | sending | runs | QPS (200s) | p50 ms | p95 ms | p99 ms | answers other than 200 "
        "| 503 p99 ms | wrong 200s | server CPU % | server CPU ms / 200 | page faults / 200 | peak RSS MB "
        "| others CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (profile, tree, clients, mode, rate), runs in groups.items():
        others: Counter = Counter()
        for r in runs:
            others.update({k: v for k, v in r["statuses"].items() if k != "200"})
        sent = sum(r["sent"] for r in runs)
        share = f" ({sum(others.values()) / sent * 100:.1f}%)" if others else ""
        offered = f"{rate:g}/s" if mode == "paced" else "closed loop"
        rows.append(
            f"| {profile}{f' ({tree})' if tree else ''} | {clients} | {offered} | {len(runs)} "
            f"| {spread([r['qps'] for r in runs], 1)} | {spread([r['p50'] for r in runs])} "
            f"| {spread([r['p95'] for r in runs])} | {spread([r['p99'] for r in runs])} "
            f"| {', '.join(f'{k}: {v}' for k, v in sorted(others.items())) or 'none'}{share} "
            f"| {max((round(r['busy_p99']) for r in runs if r['busy_p99'] == r['busy_p99']), default='-')} "
            f"| {sum(r['wrong'] for r in runs)} | {spread([r['server_cpu'] for r in runs])} "
            f"| {spread([r['server_cpu'] * 10 / r['qps'] for r in runs if r['qps']], 1)} "
            f"| {spread([r['faults_per_200'] for r in runs if r['qps']])} "
            f"| {max(r['peak_rss_mb'] for r in runs):.0f} | {spread([r['others_cpu'] for r in runs])} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["fast", "accurate"], choices=PROFILES)
    parser.add_argument("--clients", nargs="+", type=int, default=[20, 50, 100])
    parser.add_argument("--modes", nargs="+", default=["paced", "closed"], choices=["paced", "closed"])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per level")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured time before it")
    parser.add_argument("--rate", nargs="+", default=[], metavar="PROFILE=QPS",
                        help=f"paced rate per profile (default {' '.join(f'{k}={v:g}' for k, v in DEFAULT_RATES.items())})")
    parser.add_argument("--runs", type=int, default=1, help="repeat every level this many times")
    parser.add_argument("--raw", action="store_true", help="send the JPEG as the body instead of multipart")
    parser.add_argument("--ignore-retry-after", action="store_true", help="closed: retry a 503 at once")
    parser.add_argument("--timeout", type=float, default=10.0, help="client timeout per request, seconds")
    parser.add_argument("--count", type=int, default=100, help="load-set images")
    parser.add_argument("--env", nargs="*", default=[], metavar="KEY=VALUE", help="extra server settings")
    parser.add_argument("--json", type=Path, help="also write every result here")
    parser.add_argument("--quiet", type=float, default=0, metavar="PERCENT",
                        help="before each level, wait (up to --quiet-wait s) until the rest of the machine uses "
                        "under PERCENT %% CPU (0: do not wait)")
    parser.add_argument("--quiet-wait", type=float, default=120)
    parser.add_argument("--retries", type=int, default=0,
                        help="with --quiet: run a level again (up to this many times) when the rest of the machine "
                        "used PERCENT or more during it; the last attempt is kept either way")
    parser.add_argument("--compare", nargs="+", default=[], metavar="LABEL=DIR",
                        help="also run servers from these source trees (e.g. old=/tmp/base from `git archive`), "
                        "level by level in turn with this one, so that the machine's noise hits both alike")
    parser.add_argument("--restart", action="store_true",
                        help="a fresh server process for every level (a process's speed varies by several percent "
                        "from one start to the next on this machine, so comparisons need several)")
    parser.add_argument("--variant", nargs="+", default=[], metavar="LABEL=KEY=VALUE[,KEY=VALUE]",
                        help="also run this tree with other settings, in turn as --compare does")
    args = parser.parse_args()
    rates = {**DEFAULT_RATES, **{k: float(v) for k, v in (item.split("=", 1) for item in args.rate)}}
    extra_env = dict(item.split("=", 1) for item in args.env)

    command = shlex.join(["python", "bench/load.py", *sys.argv[1:]])
    images = build(count=args.count, out=DEFAULT_OUT)
    jpegs = [(DEFAULT_OUT / im["file"]).read_bytes() for im in images]
    print(f"command: {command}")
    print(f"machine: {cpu()}, load average {loadavg()} at start; "
          f"load set: {len(images)} images 1920x1080, {sum(len(im['faces']) for im in images)} faces, "
          f"{sum(map(len, jpegs)) / len(jpegs) / 1024:.0f} KiB each on average; body "
          f"{'raw image/jpeg' if args.raw else 'multipart/form-data'}; {args.seconds:g} s measured per level "
          f"after {args.warmup:g} s", flush=True)
    results, recalls = [], {}
    log_dir = ROOT / ".cache" / "load-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    trees = [("", ROOT, {})]
    trees += [(label, Path(path).resolve(), {}) for label, path in (c.split("=", 1) for c in args.compare)]
    for variant in args.variant:
        label, settings = variant.split("=", 1)
        trees.append((label, ROOT, dict(kv.split("=", 1) for kv in settings.split(","))))
    if len(trees) > 1:
        trees[0] = ("this", ROOT, {})
    for profile in args.profiles:
        servers, expected, starts = [], {}, {}
        try:
            for label, root, variant_env in trees:
                env = {**profile_env(root, profile), **extra_env, **variant_env}
                log = log_dir / f"{profile}{'-' + label if label else ''}.log"
                starts[label] = (env, ["--no-cameras"], root, log)
                server = Server(env, ["--no-cameras"], root, log)
                servers.append((label, server))
                server.wait_ready()
                expected[label], recall = recall_pass(server.port, jpegs, images)
                recalls[f"{profile} {label}".strip()] = recall
                print(f"{profile}{' (' + label + ')' if label else ''}: server "
                      f"`{shlex.join(['streamer', *server.command[3:]])}` with "
                      f"{' '.join(f'{k}={v}' for k, v in env.items()) or 'the defaults'}; "
                      f"idle: {recall['idle_ms']:.0f} ms a request, X-Faces-Detected {recall['detected']} "
                      f"for {recall['labelled']} labelled faces, {recall['hidden'] * 100:.1f}% of labelled faces "
                      f"hidden", flush=True)
            requests = {
                label: [make_request(server.port, jpeg, multipart=not args.raw) for jpeg in jpegs]
                for label, server in servers
            }
            fresh = True
            for clients in args.clients:
                for mode in args.modes:
                    for _ in range(args.runs):
                        for index, (label, server) in enumerate(servers):
                            if args.restart and not fresh:
                                server.stop()
                                server = Server(*starts[label])
                                servers[index] = (label, server)
                                server.wait_ready()
                                recall_pass(server.port, jpegs[:20], images[:20])  # warm up
                                requests[label] = [make_request(server.port, j, multipart=not args.raw) for j in jpegs]
                            level = Level(clients, mode, args.seconds, args.warmup, rates[profile],
                                          not args.ignore_retry_after, args.timeout)
                            for attempt in range(1 + args.retries):
                                if args.quiet:
                                    wait_for_quiet(args.quiet, args.quiet_wait)
                                result = run_level(server, requests[label], expected[label], level)
                                if not args.quiet or result["others_cpu"] < args.quiet:
                                    break
                                print(f"  (discarded: others used {result['others_cpu']:.0f}% CPU)", flush=True)
                            result["attempts"] = attempt + 1
                            result["profile"], result["tree"] = profile, label
                            results.append(result)
                            print(table_row(result), f"(load {loadavg()})", flush=True)
                        fresh = False
        finally:
            for _, server in servers:
                server.stop()
    print()
    print(f"load average at the end: {loadavg()}")
    print(HEADER)
    for result in results:
        print(table_row(result))
    print()
    if args.runs > 1:
        print("\n".join(summary(results)))
        print()
    for name, recall in recalls.items():
        print(f"{name}: idle {recall['idle_ms']:.0f} ms a request; X-Faces-Detected {recall['detected']} for "
              f"{recall['labelled']} labelled faces; {recall['hidden'] * 100:.1f}% of labelled faces hidden")
    print(f"command: {command}")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "results": results, "recall": recalls}, indent=1))


if __name__ == "__main__":
    main()
