"""Overload and abandoned requests: fast 503s past capacity, bounded memory, no work for clients
that have gone away.

No assertion here depends on how fast the machine is: a gated fake detector holds the worker
busy for exactly as long as a test needs, and progress is awaited by polling the pool's counters.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import uvicorn

from conftest import FACES_DEV, free_port
from streamer.config import DetectorSettings, load_settings
from streamer.faces.detection import Face
from streamer.stills import workers
from streamer.stills.workers import Abandoned, Overloaded, WorkerPool


class GatedDetector:
    """Finds one face; each call waits for the test to open the gate."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        self.calls = 0

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        self.calls += 1
        self.entered.release()
        assert self.gate.wait(60), "the test never opened the gate"
        return [Face((0.0, 0.0, image.shape[1] / 2, image.shape[0] / 2), 0.9)]

    def close(self) -> None:
        pass


def wait_until(condition, what: str, limit: float = 60.0) -> None:
    """Poll ``condition``; the limit only stops a broken test from hanging, it is not a measurement."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------------------------
# the pool on its own


@pytest.fixture
def gated(monkeypatch) -> GatedDetector:
    detector = GatedDetector()
    monkeypatch.setattr(workers, "create_detector", lambda settings: detector)
    return detector


def test_a_queued_job_whose_client_went_away_never_runs(gated):
    pool = WorkerPool(DetectorSettings(), workers=1, queue_size=4, max_wait_s=600)
    ran: list[str] = []

    def job(name: str):
        def run(detector, stop):
            detector.detect(np.zeros((4, 4, 3), np.uint8), 0.5)
            ran.append(name)
            return name
        return run

    async def main() -> None:
        first = asyncio.ensure_future(pool.run(job("first")))
        await asyncio.to_thread(gated.entered.acquire)  # the only worker is now busy with "first"
        gone = asyncio.Event()
        second = asyncio.ensure_future(pool.run(job("second"), gone=gone.wait))
        third = asyncio.ensure_future(pool.run(job("third"), gone=asyncio.Event().wait))
        while pool.in_flight < 3:
            await asyncio.sleep(0.01)
        gone.set()  # the second client disconnects while its job waits for the worker
        with pytest.raises(Abandoned):
            await second
        assert pool.stats().abandoned == 1
        gated.gate.set()
        assert await first == "first"
        assert await third == "third"

    asyncio.run(main())
    pool.shutdown()
    assert ran == ["first", "third"]
    assert gated.calls == 2
    stats = pool.stats()
    assert (stats.done, stats.abandoned, stats.in_flight) == (2, 1, 0)


def test_a_running_job_stops_at_its_next_stage_when_its_client_goes(gated):
    pool = WorkerPool(DetectorSettings(), workers=1, queue_size=0, max_wait_s=600)
    stages: list[str] = []

    def job(detector, stop):
        detector.detect(np.zeros((4, 4, 3), np.uint8), 0.5)
        stages.append("detected")
        stop.check()
        stages.append("encoded")

    async def main() -> None:
        gone = asyncio.Event()
        task = asyncio.ensure_future(pool.run(job, gone=gone.wait))
        await asyncio.to_thread(gated.entered.acquire)
        gone.set()
        with pytest.raises(Abandoned):
            await task
        gated.gate.set()

    asyncio.run(main())
    pool.shutdown()
    assert stages == ["detected"]
    assert pool.stats().abandoned == 1 and pool.stats().in_flight == 0


def test_a_full_pool_refuses_at_once_and_counts_it(gated):
    pool = WorkerPool(DetectorSettings(), workers=1, queue_size=1, max_wait_s=600)

    async def main() -> None:
        running = [asyncio.ensure_future(pool.run(lambda d, s: d.detect(np.zeros((4, 4, 3), np.uint8), 0.5)))
                   for _ in range(2)]
        while pool.in_flight < 2:
            await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await pool.run(lambda d, s: None)
        gated.gate.set()
        await asyncio.gather(*running)

    asyncio.run(main())
    pool.shutdown()
    stats = pool.stats()
    assert (stats.done, stats.rejected, stats.in_flight) == (2, 1, 0)


def test_a_job_that_would_wait_too_long_is_refused_with_the_predicted_wait(gated):
    pool = WorkerPool(DetectorSettings(), workers=1, queue_size=50, max_wait_s=1.0)

    async def main() -> tuple[list[asyncio.Future], Overloaded]:
        await pool.run(lambda d, s: time.sleep(0.3))  # teaches the pool how long a job takes
        running = [asyncio.ensure_future(pool.run(lambda d, s: d.detect(np.zeros((4, 4, 3), np.uint8), 0.5)))]
        await asyncio.to_thread(gated.entered.acquire)  # the only worker is busy
        while True:  # queue jobs until the pool says the next would wait too long
            try:
                running.append(asyncio.ensure_future(pool.run(lambda d, s: None)))
                await asyncio.sleep(0)
                if running[-1].done():
                    running[-1].result()
            except Overloaded as refused:
                running.pop()
                return running, refused
            assert len(running) < 50, "never refused: the queue would have filled"

    running, refused = asyncio.run(asyncio.wait_for(main(), 60))
    job_s = pool.stats().job_s
    assert job_s >= 0.3
    queued = len(running) - 1
    # jobs are admitted while the wait they would have (jobs ahead x mean job time) is within 1 s
    assert queued == int(1.0 // job_s)
    assert refused.retry_after == max(1, math.ceil((queued + 1) * job_s))
    assert "would wait" in str(refused)
    gated.gate.set()
    pool.shutdown()
    assert pool.stats().rejected == 1


def test_a_job_kept_waiting_far_past_the_limit_is_dropped_before_it_runs(gated):
    pool = WorkerPool(DetectorSettings(), workers=1, queue_size=4, max_wait_s=0.2)
    ran: list[str] = []

    async def main() -> None:
        first = asyncio.ensure_future(pool.run(lambda d, s: d.detect(np.zeros((4, 4, 3), np.uint8), 0.5)))
        await asyncio.to_thread(gated.entered.acquire)
        # no job has finished yet, so nothing predicts a wait: the second job is admitted
        second = asyncio.ensure_future(pool.run(lambda d, s: ran.append("second")))
        await asyncio.sleep(0.6)  # the worker stays busy for three times the limit
        gated.gate.set()
        await first
        with pytest.raises(Overloaded, match="waited"):
            await second

    asyncio.run(main())
    pool.shutdown()
    assert ran == []
    assert pool.stats().expired == 1


# --------------------------------------------------------------------------------------------
# the HTTP API, in this process (so that the detector can be gated), over real sockets


class InProcessServer:
    def __init__(self, **server: object) -> None:
        from streamer.server import create_app

        base = load_settings()
        settings = base.model_copy(update={
            "cameras": (),
            "server": base.server.model_copy(update={"workers": 1, **server}),
            "rtsp": base.rtsp.model_copy(update={"enabled": False}),
        })
        self.app = create_app(settings)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "InProcessServer":
        self.thread.start()
        wait_until(lambda: self.server.started and self.app.state.ready, "the server to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def pool(self) -> WorkerPool:
        return self.app.state.pool

    def send(self, body: bytes) -> socket.socket:
        """Send a whole raw JPEG request on a new connection; the answer is left to the caller."""
        sock = socket.create_connection(("127.0.0.1", self.port))
        head = (f"POST /v1/anonymize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        sock.sendall(head + body)
        return sock


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    sock.settimeout(60)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection without an answer"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ")[1]), body


@pytest.fixture
def jpeg() -> bytes:
    path = next(p for p in sorted((FACES_DEV / "images").glob("*.jpg")))
    return path.read_bytes()


def test_a_queued_request_whose_client_disconnects_is_not_run(gated, jpeg):
    with InProcessServer(queue_size=4) as srv:
        first = srv.send(jpeg)
        assert gated.entered.acquire(timeout=60)  # the only worker is busy with the first request
        second = srv.send(jpeg)
        wait_until(lambda: srv.pool.in_flight == 2, "the second request to be queued")
        second.close()  # the client gives up (a timeout, a closed tab) while its job waits
        wait_until(lambda: srv.pool.stats().abandoned == 1, "the queued job to be dropped")
        gated.gate.set()
        status, body = read_answer(first)
        first.close()
        assert status == 200 and body[:2] == b"\xff\xd8"
        wait_until(lambda: srv.pool.in_flight == 0, "the pool to be idle")
        stats = srv.pool.stats()
    assert gated.calls == 1  # the second image never reached the detector
    assert (stats.done, stats.abandoned) == (1, 1)


def test_a_running_request_whose_client_disconnects_stops_before_encoding(gated, jpeg, monkeypatch):
    encoded: list[int] = []
    from streamer.stills import job

    real_encode = job.encode
    monkeypatch.setattr(job, "encode", lambda *a: encoded.append(1) or real_encode(*a))
    with InProcessServer(queue_size=0) as srv:
        sock = srv.send(jpeg)
        assert gated.entered.acquire(timeout=60)  # its job is in the detector
        sock.close()
        wait_until(lambda: srv.pool.stats().abandoned == 1, "the server to notice the client has gone")
        assert srv.pool.in_flight == 1  # still in the detector
        gated.gate.set()
        wait_until(lambda: srv.pool.in_flight == 0, "the pool to be idle")
        stats = srv.pool.stats()
    assert (stats.done, stats.abandoned) == (0, 1)
    assert encoded == []


def test_past_capacity_the_answer_is_503_before_the_body_is_read(gated, jpeg):
    with InProcessServer(queue_size=0) as srv:
        busy = srv.send(jpeg)
        assert gated.entered.acquire(timeout=60)
        # A client that sends only the head, promising a body it never sends: a server that read
        # bodies before admission would wait for it; this one answers at once.
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(b"POST /v1/anonymize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 5000000\r\n\r\n")
        status, body = read_answer(sock)
        sock.close()
        assert status == 503 and b"overloaded" in body
        gated.gate.set()
        assert read_answer(busy)[0] == 200
        busy.close()
        stats = srv.pool.stats()
    assert stats.rejected == 1


# --------------------------------------------------------------------------------------------
# ``streamer serve`` in its own process, flooded


def peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])


def test_a_flood_of_big_uploads_gets_fast_503s_and_memory_stays_bounded(start_server):
    uploads, clients = 2, 60
    srv = start_server({
        "STREAMER_SERVER__WORKERS": "1", "STREAMER_SERVER__QUEUE_SIZE": "0",
        "STREAMER_SERVER__MAX_UPLOADS": str(uploads), "STREAMER_IMAGE__MAX_BYTES": "12000000",
    })
    noise = np.random.default_rng(1).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    body = cv2.imencode(".png", noise, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()  # ~6.8 MB
    headers = {"content-type": "image/png"}
    pid = srv.process.pid

    def post() -> int:
        return httpx.post(srv.url + "/v1/anonymize", content=body, headers=headers, timeout=60).status_code

    assert post() == 200  # warm up
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS starts again from the current RSS
    before = peak_rss_kb(pid)
    assert post() == 200
    one_job_mb = (peak_rss_kb(pid) - before) / 1024

    async def flood() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            return await asyncio.gather(
                *(client.post(srv.url + "/v1/anonymize", content=body, headers=headers) for _ in range(clients))
            )

    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = peak_rss_kb(pid)
    replies = asyncio.run(flood())
    flood_mb = (peak_rss_kb(pid) - before) / 1024
    statuses = [r.status_code for r in replies]
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses
    for reply in replies:
        if reply.status_code == 503:
            assert reply.headers["retry-after"].isdigit() and reply.json()["error"] == "overloaded"
    # Reading every upload would hold clients x 6.5 MB = 390 MB; the server holds at most `uploads`
    # bodies and works on one image at a time, so the flood costs about what one job costs.
    body_mb = len(body) / 2**20
    assert flood_mb < one_job_mb + 8 * body_mb, f"one job: +{one_job_mb:.0f} MB; the flood: +{flood_mb:.0f} MB"
    jobs = httpx.get(srv.url + "/readyz").json()["jobs"]
    assert jobs["in_flight"] == 0
    assert post() == 200
