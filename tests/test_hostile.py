"""Clients that try to take the service down without sending much: each is answered or cut off,
and the server keeps serving everyone else."""

from __future__ import annotations

import socket
import time

import cv2
import httpx
import numpy as np


def stalled_upload(url: str, path: str, content_type: str, length: int) -> socket.socket:
    """A connection that sends a request's headers and a few bytes of its body, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n".encode() + b"\x89PNG\r\n"
    )
    return sock


def answer_status(sock: socket.socket, timeout: float) -> int:
    sock.settimeout(timeout)
    head = sock.recv(4096).decode("latin-1")
    return int(head.split(" ", 2)[1])


def test_stalled_uploads_are_cut_off_and_free_their_slots(start_server):
    srv = start_server({
        "STREAMER_SERVER__WORKERS": "1", "STREAMER_SERVER__MAX_UPLOADS": "2",
        "STREAMER_SERVER__BODY_TIMEOUT_S": "2", "STREAMER_DETECTOR__PROFILE": "fast",
    })
    image = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()

    def post() -> int:
        return httpx.post(srv.url + "/v1/anonymize", content=image, headers={"content-type": "image/png"}).status_code

    stalled = [stalled_upload(srv.url, "/v1/anonymize", "image/png", 1_000_000) for _ in range(2)]
    try:
        time.sleep(0.3)
        assert post() == 503  # both upload slots are held by the stalled clients...
        started = time.monotonic()
        assert [answer_status(sock, timeout=10) for sock in stalled] == [408, 408]
        assert time.monotonic() - started < 5  # ...for body_timeout_s, not for ever
        assert post() == 200
    finally:
        for sock in stalled:
            sock.close()


def test_a_stalled_webrtc_offer_is_cut_off_too(start_server):
    srv = start_server({"STREAMER_SERVER__BODY_TIMEOUT_S": "1"}, ["--camera", "cam=pattern://320x180@10"])
    sock = stalled_upload(srv.url, "/api/cameras/cam/whep", "application/sdp", 10_000)
    try:
        assert answer_status(sock, timeout=10) == 408
    finally:
        sock.close()
    oversized = httpx.post(srv.url + "/api/cameras/cam/offer", content=b"x" * 100_000,
                           headers={"content-type": "application/json"})
    assert oversized.status_code == 413 and oversized.json()["error"] == "too_large"
