"""Scaling on engines people already run, with real parts on loopback: Debian's nginx with the
shipped deploy/nginx config in front of two still-image workers, two camera workers on shards 0/2
and 1/2, and Debian's Prometheus with the shipped deploy/prometheus config scraping all four.

Every worker is ``streamer serve`` in its own process (conftest's ``Server``), with the fast
detector and one thread, to leave CPU for the rest of the machine. Nothing here asserts on speed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import cv2
import httpx
import numpy as np
import pytest
import yaml

from conftest import FACES_DEV, ROOT, Server, free_port, wait_for

DEPLOY = ROOT / "deploy"
STILLS_ENV = {"STREAMER_DETECTOR__PROFILE": "fast", "STREAMER_SERVER__WORKERS": "1"}
CAMERAS_ENV = {
    **STILLS_ENV,
    "STREAMER_PIPELINE__DETECTOR__PROFILE": "fast",
    "STREAMER_PIPELINE__DETECT_FPS": "5",  # a fifth of the clip's frames: low CPU, the map is what is tested
    "STREAMER_SERVER__SHARD_URL": "http://shard-{shard}.test:8000",
}
SHARDS = {0: {"door", "lobby"}, 1: {"yard", "shop"}}  # what streamer.shards makes of these names
# Requests that may fail while a worker is killed: nginx sends them again, unless the worker died
# while sending its answer (nginx cannot send a request again once the client has part of an answer).
FAILED_BUDGET = 1
BURST = 120
CLIENTS = 6



def tool(name: str) -> str:
    """The path of a Debian tool (nginx is in /usr/sbin, which a user's PATH may lack)."""
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    assert path, f"{name} is needed: Debian's nginx and prometheus packages (make test installs them)"
    return path


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


class Workers:
    """``streamer serve`` processes started with the same settings, each restartable on its port."""

    def __init__(self, env: dict[str, str], args: list[list[str]]) -> None:
        self.env, self.args = env, args
        self.servers = [Server(env, extra) for extra in args]
        for server in self.servers:
            server.wait_ready()

    def kill(self, index: int) -> None:
        """As a crash or a lost node does: SIGKILL, no shutdown."""
        self.servers[index].process.send_signal(signal.SIGKILL)
        self.servers[index].process.wait(timeout=10)

    def start_again(self, index: int) -> Server:
        server = Server(self.env, self.args[index], port=self.servers[index].port)
        self.servers[index] = server
        server.wait_ready()
        return server

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def stills() -> Iterator[Workers]:
    workers = Workers(STILLS_ENV, [["--no-cameras"], ["--no-cameras"]])
    yield workers
    workers.stop()


@pytest.fixture(scope="module")
def cameras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    config = tmp_path_factory.mktemp("shards") / "cameras.yaml"
    demo = ROOT / "streamer" / "assets" / "demo.mp4"
    names = sorted(SHARDS[0] | SHARDS[1])
    config.write_text(yaml.safe_dump({"cameras": [{"name": name, "source": str(demo)} for name in names]}))
    workers = Workers(CAMERAS_ENV, [["--config", str(config), "--shard", f"{i}/2"] for i in (0, 1)])
    yield workers
    workers.stop()


class Nginx:
    """Debian's nginx, in the foreground, with deploy/nginx/streamer.conf as shipped but for its
    addresses: the upstream servers are ``workers`` and it listens on a loopback port. Its prefix,
    logs and temporary files are in ``folder``."""

    def __init__(self, folder: Path, workers: list[str]) -> None:
        shipped = (DEPLOY / "nginx" / "streamer.conf").read_text()
        upstreams = iter(workers)
        conf, replaced = re.subn(
            r"^(\s*server )stills-\d+:8000( [^;]*;)$", lambda m: f"{m[1]}{next(upstreams)}{m[2]}", shipped, flags=re.M
        )
        assert replaced == len(workers), "the shipped upstream lists one server per still worker"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = folder / "access.log"
        conf = conf.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        conf = conf.replace("/var/log/nginx/access.log", str(self.access_log))
        (folder / "streamer.conf").write_text(conf)
        kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        temp = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in kinds)
        (folder / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")  # workers as root can write the tmp folder
            + f"daemon off;\nworker_processes 1;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} info;\n"
            + "events { worker_connections 256; }\n"
            + f"http {{\n{temp}\n    include {folder / 'streamer.conf'};\n}}\n"
        )
        self.command = [tool("nginx"), "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(folder / "error.log")]
        check = subprocess.run([*self.command, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: answers(self.url + "/healthz"), 10, "nginx to listen")

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM: nginx's fast shutdown
        self.process.wait(timeout=10)


def jobs(server: Server) -> dict[str, int]:
    """The worker's still-image jobs (its /readyz): ``done`` since it started, ``in_flight`` now."""
    return httpx.get(server.url + "/readyz", timeout=5).json()["jobs"]


def jobs_done(server: Server) -> int:
    return jobs(server)["done"]


def photo(entry: dict) -> bytes:
    """A faces-dev photo tiled 3 x 3 (about 1250 x 900): jobs of some milliseconds with the fast
    detector, long enough that a killed worker has requests in flight."""
    image = cv2.imread(str(FACES_DEV / entry["file"]))
    ok, data = cv2.imencode(".jpg", np.tile(image, (3, 3, 1)), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def burst(url: str, body: bytes, count: int, during: Callable[[], None] | None = None) -> list[int | str]:
    """At least ``count`` POST /v1/anonymize from CLIENTS threads, each sending its next request
    when the last is answered. ``during`` runs once a quarter are answered, and the clients keep
    sending until it has returned (so that requests are in flight for all of it, however fast the
    machine). Returns each request's status, or its transport error's name."""
    results: list[int | str] = []
    lock = threading.Lock()
    quarter, done = threading.Event(), threading.Event()
    if during is None:
        done.set()

    def one() -> int | str:
        try:
            reply = httpx.post(url + "/v1/anonymize", content=body, headers={"content-type": "image/jpeg"}, timeout=30)
        except httpx.TransportError as exc:
            return type(exc).__name__
        return reply.status_code

    def client() -> None:
        while not (done.is_set() and len(results) >= count):
            result = one()
            with lock:
                results.append(result)
                if len(results) >= count // 4:
                    quarter.set()

    with ThreadPoolExecutor(CLIENTS) as pool:
        clients = [pool.submit(client) for _ in range(CLIENTS)]
        if during is not None:
            try:
                quarter.wait(timeout=120)
                during()
            finally:
                done.set()
        for future in clients:
            future.result()
    return results


def test_nginx_spreads_still_images_and_retries_when_a_worker_dies(stills: Workers, faces_dev, tmp_path: Path):
    body = photo(faces_dev[0])
    nginx = Nginx(tmp_path, [f"127.0.0.1:{server.port}" for server in stills.servers])
    try:
        before_kill: list[dict[str, int]] = []

        def kill_one() -> None:
            # Killed while it holds requests, so that nginx has some to send again, not only new ones.
            wait_for(lambda: jobs(stills.servers[1])["in_flight"] >= 2, 20, "requests in flight on worker 1", every=0.02)
            before_kill.extend(jobs(server) for server in stills.servers)
            stills.kill(1)

        results = burst(nginx.url, body, BURST, during=kill_one)
        failed = [result for result in results if result != 200]
        assert len(failed) <= FAILED_BUDGET, failed
        assert all(counts["done"] > 0 for counts in before_kill), f"both workers took requests: {before_kill}"

        back = stills.start_again(1)
        # nginx leaves a failed worker out for fail_timeout (5 s), then tries it again.
        deadline = time.monotonic() + 30
        while jobs_done(back) == 0:
            assert time.monotonic() < deadline, "the restarted worker took no request"
            assert set(burst(nginx.url, body, 12)) == {200}
        assert set(burst(nginx.url, body, 24)) == {200}
        assert jobs_done(back) > 0 and jobs_done(stills.servers[0]) > 0
    finally:
        nginx.stop()
    upstreams = re.findall(r"upstream=(\S+)", nginx.access_log.read_text())
    assert any("," in upstream for upstream in upstreams), "the access log shows a request sent again"


def running(server: Server) -> dict[str, dict]:
    return {camera["name"]: camera for camera in httpx.get(server.url + "/api/cameras", timeout=5).json()}


def streaming(server: Server, names: set[str]) -> bool:
    cameras = running(server)
    return cameras.keys() == names and all(
        cameras[name]["state"] == "streaming" and cameras[name]["fps"].get("output", 0) > 0 for name in names
    )


def test_each_camera_runs_on_exactly_one_shard_and_comes_back_after_a_crash(cameras: Workers):
    for shard, server in enumerate(cameras.servers):
        assert running(server).keys() == SHARDS[shard]
        assert {camera["shard"] for camera in running(server).values()} == {shard}
        shard_map = httpx.get(server.url + "/api/shards", timeout=5).json()
        assert (shard_map["shard"], shard_map["shards"]) == (shard, 2)
        assert {(c["name"], c["shard"], c["local"], c["url"]) for c in shard_map["cameras"]} == {
            (name, owner, owner == shard, f"http://shard-{owner}.test:8000") for owner in SHARDS for name in SHARDS[owner]
        }
        (other,) = SHARDS.keys() - {shard}
        elsewhere = httpx.get(f"{server.url}/api/cameras/{min(SHARDS[other])}/frame.jpeg", timeout=5)
        assert elsewhere.status_code == 404
        assert elsewhere.json()["detail"].endswith(f"runs on shard {other}, http://shard-{other}.test:8000")
    for shard, server in enumerate(cameras.servers):
        wait_for(lambda: streaming(server, SHARDS[shard]), 30, f"shard {shard}'s cameras to stream")

    cameras.kill(1)
    assert streaming(cameras.servers[0], SHARDS[0])  # the other shard carries on, and takes nothing over
    back = cameras.start_again(1)
    wait_for(lambda: streaming(back, SHARDS[1]), 30, "the restarted shard's cameras to stream again")


class Prometheus:
    """Debian's Prometheus on a loopback port, storage in ``folder``, scraping every second with
    deploy/prometheus/prometheus.yml as shipped but for its targets: each job's are ``targets[job]``."""

    def __init__(self, folder: Path, targets: dict[str, list[str]]) -> None:
        config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        assert {job["job_name"] for job in config["scrape_configs"]} == targets.keys()
        config["global"] = {**config["global"], "scrape_interval": "1s"}
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": targets[job["job_name"]]}]
        self.config = folder / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        (folder / "api-key").write_text("sk_unused\n")  # credentials_file, beside the config; these workers have no users
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (folder / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [tool("prometheus"), f"--config.file={self.config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for(lambda: answers(self.url + "/-/ready"), 30, "Prometheus to be ready")

    def query(self, expr: str) -> list[dict]:
        reply = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10).json()
        assert reply["status"] == "success", (expr, reply)
        return reply["data"]["result"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


def promtool(*args: str, stdin: str | None = None) -> None:
    result = subprocess.run([tool("promtool"), *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_every_worker_and_the_dashboard_queries_run(stills: Workers, cameras: Workers, tmp_path: Path):
    metrics = httpx.get(cameras.servers[0].url + "/metrics", timeout=5).text
    promtool("check", "metrics", stdin=metrics)
    # --syntax-only: the shipped config's api-key is made by whoever deploys it (deploy/compose.yaml)
    promtool("check", "config", "--syntax-only", str(DEPLOY / "prometheus" / "prometheus.yml"))

    targets = {
        "streamer-stills": [server.url.removeprefix("http://") for server in stills.servers],
        "streamer-cameras": [server.url.removeprefix("http://") for server in cameras.servers],
    }
    prometheus = Prometheus(tmp_path, targets)
    try:
        promtool("check", "config", str(prometheus.config))
        wait_for(lambda: len(prometheus.query('up{job=~"streamer-.*"} == 1')) == 4, 30, "every worker scraped")
        every_camera = SHARDS[0] | SHARDS[1]

        def fps_of_each_camera() -> dict[str, float]:
            rates = {r["metric"]["camera"]: float(r["value"][1]) for r in prometheus.query('streamer_fps{stage="output"}')}
            return rates if rates.keys() == every_camera and all(rates.values()) else {}

        rates = wait_for(fps_of_each_camera, 30, "an output fps for each camera")
        assert all(rate > 0 for rate in rates.values()), rates

        dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "streamer.json").read_text())
        exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
        exported = set(re.findall(r"^# TYPE (\w+)", metrics, flags=re.M))
        for expr in exprs:
            for name in re.findall(r"\b((?:streamer|process)_\w+)", expr):
                base = re.sub(r"_(bucket|count|sum)$", "", name)
                assert name in exported or base in exported, f"{name} in the dashboard is not exported"
            prometheus.query(expr.replace("$__rate_interval", "1m").replace("$camera", ".*").replace("$job", "streamer-.*"))
    finally:
        prometheus.stop()
