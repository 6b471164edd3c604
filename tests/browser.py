"""Headless Debian Chromium driven by Playwright, for the web UI tests and the WebRTC benchmark.

Playwright's own browser download is never used: the system's /usr/bin/chromium is launched.
WebRTC stays on loopback: Chromium may offer 127.0.0.1 candidates and shows raw addresses instead
of mDNS names, and the server is told to offer 127.0.0.1 only (``webrtc.host_addresses``).
"""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]
LOOPBACK_WEBRTC = {"STREAMER_WEBRTC__HOST_ADDRESSES": "[127.0.0.1]"}

# Draws the <video>'s current frame on a canvas and answers it as a PNG data URL.
GRAB_FRAME_JS = """(selector) => {
  const video = document.querySelector(selector);
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return canvas.toDataURL("image/png");
}"""


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
