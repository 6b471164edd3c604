"""Users, roles and cameras on every route and transport; logins, their limits, the audit log, TLS,
and the refusal to listen beyond loopback without users. All against ``streamer serve``."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from playwright.sync_api import sync_playwright

from browser import LOOPBACK_WEBRTC, launch
from conftest import ROOT, Server, free_port, wait_for
from streamer.outputs.webrtc import use_host_addresses

use_host_addresses(("127.0.0.1",))

PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22"}
CAMERAS = ["--camera", "door=pattern://320x180@10", "--camera", "yard=pattern://320x180@10"]


def users_cli(users_file: Path, *args: str, password: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "users", "--file", str(users_file), *args],
        input=password, capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """A users file (alice: admin; bob: viewer of door, with an API key) and an audit log path."""
    folder = tmp_path_factory.mktemp("site")
    users = folder / "users.yaml"
    users_cli(users, "add", "alice", "--role", "admin", "--password-stdin", password=PASSWORDS["alice"] + "\n")
    users_cli(users, "add", "bob", "--cameras", "door", "--password-stdin", password=PASSWORDS["bob"] + "\n")
    key = users_cli(users, "key", "bob")
    return {"users": users, "audit": folder / "audit.log", "bob_key": key}


@pytest.fixture(scope="module")
def server(start_server, site) -> Server:
    return start_server(
        {**LOOPBACK_WEBRTC, "STREAMER_AUTH__USERS_FILE": str(site["users"]),
         "STREAMER_PIPELINE__ZONES_FILE": str(site["users"].parent / "zones.yaml"),
         "STREAMER_AUTH__AUDIT_LOG": str(site["audit"]), "STREAMER_PIPELINE__DETECTOR__PROFILE": "fast",
         "STREAMER_DETECTOR__PROFILE": "fast"},
        CAMERAS,
    )


def login(server: Server, user: str, password: str | None = None, **kwargs) -> httpx.Response:
    return httpx.post(server.url + "/api/login", json={"user": user, "password": password or PASSWORDS[user]}, **kwargs)


@pytest.fixture(scope="module")
def tokens(server) -> dict[str, dict[str, str]]:
    """Request headers for each kind of caller."""
    cookie = login(server, "bob").cookies["streamer_session"]
    return {
        "nobody": {},
        "bob": {"Cookie": f"streamer_session={cookie}"},
        "bob_bearer": {"Authorization": f"Bearer {login(server, 'bob').json()['token']}"},
        "alice": {"Authorization": f"Bearer {login(server, 'alice').json()['token']}"},
    }


async def offer_status(base: str, route: str, headers: dict[str, str]) -> int:
    """Post a real offer to ``route`` (whep or offer); a session it opens is ended again."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            if route == "whep":
                reply = await client.post(f"{base}/whep", content=sdp, headers={**headers, "content-type": "application/sdp"})
                if reply.status_code == 201:
                    await client.delete(str(httpx.URL(base).join(reply.headers["location"])), headers=headers)
            else:
                reply = await client.post(f"{base}/offer", json={"sdp": sdp, "type": "offer"}, headers=headers)
                if reply.status_code == 200:
                    await client.delete(f"{base}/sessions/{reply.json()['session']}", headers=headers)
            return reply.status_code
    finally:
        await pc.close()


def call(server: Server, route: str, camera: str, headers: dict[str, str]) -> int:
    """The status that ``route`` answers for ``camera``; streams and sessions are closed again."""
    base = f"{server.url}/api/cameras/{camera}"
    if route == "stream.mjpeg":
        with httpx.stream("GET", f"{base}/stream.mjpeg", headers=headers) as reply:
            return reply.status_code
    if route in ("whep", "offer"):
        return asyncio.run(offer_status(base, route, headers))
    if route == "whep-options":
        return httpx.options(f"{base}/whep", headers=headers).status_code
    path = {"status": base, "frame.jpeg": f"{base}/frame.jpeg"}[route]
    for _ in range(50):  # a snapshot is 503 until the camera's first frame
        reply = httpx.get(path, headers=headers)
        if reply.status_code != 503:
            return reply.status_code
        time.sleep(0.1)
    return reply.status_code


ROUTES = ["status", "frame.jpeg", "stream.mjpeg", "whep", "whep-options", "offer"]
OK = {"status": 200, "frame.jpeg": 200, "stream.mjpeg": 200, "whep": 201, "whep-options": 204, "offer": 200}


@pytest.mark.parametrize("route", ROUTES)
def test_each_camera_route_needs_a_login_and_a_granted_camera(server, tokens, route):
    assert call(server, route, "door", tokens["nobody"]) == 401
    assert call(server, route, "yard", tokens["bob"]) == 403
    assert call(server, route, "door", tokens["bob"]) == OK[route]
    assert call(server, route, "door", tokens["bob_bearer"]) == OK[route]
    assert call(server, route, "yard", tokens["alice"]) == OK[route]


def test_only_admins_change_privacy_zones_and_the_change_is_audited(server, site, tokens):
    zones = {"zones": [{"mode": "black", "points": [[0, 0], [0.2, 0], [0.2, 0.2]]}]}
    url = f"{server.url}/api/cameras/door/zones"
    assert httpx.put(url, json=zones).status_code == 401
    assert httpx.put(url, json=zones, headers=tokens["bob"]).status_code == 403
    assert httpx.get(url, headers=tokens["bob"]).status_code == 200
    assert httpx.put(url, json=zones, headers=tokens["alice"]).status_code == 200
    assert httpx.get(url, headers=tokens["bob"]).json() == zones
    lines = [json.loads(line) for line in site["audit"].read_text().splitlines()]
    assert any(line["event"] == "zones_changed" and line["user"] == "alice" for line in lines)


def test_api_keys_work_for_programs_and_the_list_shows_only_granted_cameras(server, site, tokens):
    as_program = {"Authorization": f"Bearer {site['bob_key']}"}
    cameras = httpx.get(server.url + "/api/cameras", headers=as_program).json()
    assert [c["name"] for c in cameras] == ["door"] and cameras[0]["source"] is None  # no hosts for viewers
    everything = httpx.get(server.url + "/api/cameras", headers=tokens["alice"]).json()
    assert [c["name"] for c in everything] == ["door", "yard"] and everything[0]["source"].startswith("pattern://")
    assert httpx.get(server.url + "/api/cameras", headers={"Authorization": "Bearer sk_wrong"}).status_code == 401


def test_metrics_and_stills_need_a_login_too(server, tokens):
    assert httpx.get(server.url + "/metrics").status_code == 401
    assert httpx.get(server.url + "/metrics", headers=tokens["bob"]).status_code == 403  # they name every camera
    assert httpx.get(server.url + "/metrics", headers=tokens["alice"]).status_code == 200
    png = (ROOT / "streamer" / "web" / "favicon.svg").read_bytes()  # any body: the login is checked first
    assert httpx.post(server.url + "/v1/detect", content=png, headers={"content-type": "image/png"}).status_code == 401
    assert httpx.get(server.url + "/healthz").status_code == 200 and httpx.get(server.url + "/readyz").status_code == 200


def test_login_cookie_is_httponly_and_strict_and_logout_ends_it(server):
    reply = login(server, "bob")
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie  # plain HTTP here
    headers = {"Authorization": f"Bearer {reply.json()['token']}"}
    assert httpx.get(server.url + "/api/me", headers=headers).json()["user"] == "bob"
    assert httpx.post(server.url + "/api/logout", headers=headers).status_code == 204
    assert httpx.get(server.url + "/api/me", headers=headers).status_code == 401


def test_a_login_works_on_every_server_of_the_users_file_and_ends_with_a_password_change(start_server, site, tmp_path):
    users = tmp_path / "users.yaml"
    users.write_bytes(site["users"].read_bytes())
    one, other = (start_server({"STREAMER_AUTH__USERS_FILE": str(users)}) for _ in range(2))
    bearer = {"Authorization": f"Bearer {login(one, 'bob').json()['token']}"}
    assert httpx.get(other.url + "/api/me", headers=bearer).json()["user"] == "bob"  # no sticky sessions needed
    users_cli(users, "add", "bob", "--cameras", "door", "--password-stdin", password="a-new-password\n")
    assert httpx.get(other.url + "/api/me", headers=bearer).status_code == 401
    assert httpx.get(one.url + "/api/me", headers=bearer).status_code == 401


def test_failed_logins_are_limited_per_address_and_a_forged_forwarded_for_does_not_help(start_server, site):
    srv = start_server({"STREAMER_AUTH__USERS_FILE": str(site["users"]), "STREAMER_AUTH__LOGIN_FAILURES": "3"})
    statuses = [login(srv, "bob", f"guess-{n}", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
                for n in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    refused = login(srv, "bob")  # even the right password, until the window has passed
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0


def test_guesses_sent_at_once_are_limited_too_and_odd_tokens_are_refused_not_crashed(start_server, site):
    srv = start_server({"STREAMER_AUTH__USERS_FILE": str(site["users"]), "STREAMER_AUTH__LOGIN_FAILURES": "3"})

    async def guesses() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            replies = await asyncio.gather(*(client.post(srv.url + "/api/login", json={"user": "bob", "password": f"g{n}"})
                                             for n in range(12)))
        return [reply.status_code for reply in replies]

    statuses = asyncio.run(guesses())
    assert statuses.count(401) <= 3 and statuses.count(429) >= 9  # not 12 password checks at once
    for token in ["s1.a.\u00e9", "s1." + "x" * 5000, "s1..", "sk_nope"]:
        assert httpx.get(srv.url + "/api/me", headers={"Authorization": f"Bearer {token}".encode()}).status_code == 401


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(start_server, site):
    srv = start_server({"STREAMER_AUTH__USERS_FILE": str(site["users"]), "STREAMER_AUTH__LOGIN_FAILURES": "2",
                        "STREAMER_AUTH__TRUSTED_PROXIES": "[127.0.0.1/32]"})
    forged = {"X-Forwarded-For": "198.51.100.7"}
    assert [login(srv, "bob", "wrong", headers=forged).status_code for _ in range(3)] == [401, 401, 429]
    assert login(srv, "bob", headers={"X-Forwarded-For": "198.51.100.8"}).status_code == 200


def test_the_audit_log_says_who_watched_what_and_never_a_password(server, site, tokens):
    login(server, "bob", "not-the-password")
    assert call(server, "frame.jpeg", "door", tokens["bob"]) == 200
    assert call(server, "whep", "door", tokens["bob"]) == 201
    with httpx.stream("GET", f"{server.url}/api/cameras/door/stream.mjpeg", headers=tokens["bob"]) as reply:
        parts = reply.iter_bytes()  # held: a dropped iterator would close the connection at once
        next(parts)
        time.sleep(1.2)

    def watched() -> list[dict]:
        lines = [json.loads(line) for line in site["audit"].read_text().splitlines()]
        return [line for line in lines if line["event"] == "stream_ended" and line["duration_s"] >= 1.2]

    wait_for(watched, 10, "the MJPEG stream's end in the audit log")
    lines = [json.loads(line) for line in site["audit"].read_text().splitlines()]
    assert {"login", "login_failed", "stream_started", "stream_ended", "snapshot"} <= {line["event"] for line in lines}
    (ended,) = watched()
    assert ended["user"] == "bob" and ended["camera"] == "door" and ended["address"] == "127.0.0.1"
    assert ended["transport"] == "mjpeg"
    assert {"webrtc", "mjpeg"} <= {line["transport"] for line in lines if line["event"] == "stream_started"}
    text = site["audit"].read_text() + server.output()
    assert "not-the-password" not in text and PASSWORDS["bob"] not in text and site["bob_key"] not in text


def test_changes_to_users_are_audited_too(tmp_path):
    log = tmp_path / "audit.log"
    subprocess.run(
        [sys.executable, "-m", "streamer", "users", "--file", str(tmp_path / "users.yaml"), "add", "carol",
         "--password-stdin"], input="carols-password\n", capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "STREAMER_AUTH__AUDIT_LOG": str(log)},
    )
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert (line["event"], line["action"], line["user"]) == ("users_changed", "add", "carol")
    assert "carols-password" not in log.read_text()


def test_it_refuses_to_listen_beyond_loopback_without_users():
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--no-cameras"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert done.returncode == 2 and "without users" in done.stderr


def test_tls_when_a_certificate_is_configured(site, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    trust = ssl.create_default_context(cafile=str(cert))
    srv = Server({"STREAMER_AUTH__USERS_FILE": str(site["users"]), "STREAMER_SERVER__TLS_CERT": str(cert),
                  "STREAMER_SERVER__TLS_KEY": str(key)}, ["--no-cameras"])
    port = srv.port
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"https://127.0.0.1:{port}/readyz", verify=trust)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, srv.output()
            time.sleep(0.3)
        reply = httpx.post(f"https://127.0.0.1:{port}/api/login", json={"user": "bob", "password": PASSWORDS["bob"]},
                           verify=trust)
        assert reply.status_code == 200 and "secure" in reply.headers["set-cookie"].lower()
        assert reply.headers["strict-transport-security"].startswith("max-age=")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")  # no plain HTTP beside it
    finally:
        srv.stop()


def test_open_loopback_server_refuses_foreign_host_names_and_sends_security_headers(start_server):
    srv = start_server({})
    assert httpx.get(srv.url + "/healthz", headers={"Host": "attacker.example"}).status_code == 400  # DNS rebinding
    page = httpx.get(srv.url + "/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert "access-control-allow-origin" not in httpx.get(srv.url + "/api/cameras",
                                                            headers={"Origin": "https://elsewhere.example"}).headers


def test_the_web_ui_sends_a_viewer_to_log_in_and_then_shows_only_their_cameras(server):
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            page.wait_for_url("**/login.html?next=*", timeout=15000)
            page.fill("input[name=user]", "bob")
            page.fill("input[name=password]", "wrong password")
            page.click("button[type=submit]")
            page.wait_for_selector("#error:not([hidden])")
            page.fill("input[name=password]", PASSWORDS["bob"])
            page.click("button[type=submit]")
            page.wait_for_url("**/index.html", timeout=15000)
            page.wait_for_selector(".tile .name", timeout=15000)
            assert page.locator(".tile .name").all_inner_texts() == ["door"]
            assert page.locator("#logout").inner_text() == "Log out bob"
            assert page.locator(".tile .edit-zones").is_hidden()  # a viewer gets no zone editor
        finally:
            browser.close()
