"""The web UI in real headless Chromium: live WebRTC video, MJPEG fallback, the still-image page."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from browser import GRAB_FRAME_JS, launch
from conftest import FACES_DEV, camera, wait_for
from imaging import sharpness
from streamer.config import DetectorSettings
from streamer.faces.detectors import create_detector


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


def data_url_pixels(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


def no_recognisable_face(pixels: np.ndarray) -> bool:
    detector = create_detector(DetectorSettings())
    try:
        return not detector.detect(pixels, 0.7)  # the raw face scores over 0.9
    finally:
        detector.close()


def test_camera_grid_plays_webrtc_with_the_face_hidden(live_server, browser):
    page = browser.new_page()
    page.goto(live_server.url + "/")
    page.wait_for_selector('.transport[data-transport="webrtc"]', timeout=20000)
    size = page.evaluate("() => { const v = document.querySelector('video'); return [v.videoWidth, v.videoHeight]; }")
    assert size == [640, 360]
    t0 = page.evaluate("() => document.querySelector('video').currentTime")
    time.sleep(1.5)
    assert page.evaluate("() => document.querySelector('video').currentTime") > t0 + 0.5  # it plays

    for _ in range(3):
        pixels = data_url_pixels(page.evaluate(GRAB_FRAME_JS, "video"))
        assert pixels.shape == (360, 640, 3)
        assert no_recognisable_face(pixels)
        assert sharpness(pixels) > 20  # the scene is there, not a blank or wholly blurred frame
        time.sleep(0.4)

    assert int(page.locator('.stats dd[data-key="faces"]').inner_text()) >= 1
    assert camera(live_server)["webrtc_sessions"] == 1
    page.close()  # the page says goodbye with a DELETE on pagehide
    wait_for(lambda: camera(live_server)["webrtc_sessions"] == 0, 15, "the session to be cleaned up")


def test_mjpeg_fallback_when_webrtc_fails(live_server, browser):
    page = browser.new_page()
    page.route("**/whep", lambda route: route.abort())  # signalling fails as behind a bad proxy
    page.goto(live_server.url + "/")
    page.wait_for_selector('.transport[data-transport="mjpeg"]', timeout=20000)
    page.wait_for_function("() => document.querySelector('.view img').naturalWidth > 0", timeout=10000)
    assert page.evaluate("() => document.querySelector('.view img').naturalWidth") == 640
    page.close()


def test_still_image_page_uploads_and_shows_the_anonymized_result(live_server, browser, easy_images):
    entry = easy_images[0]
    page = browser.new_page()
    page.goto(live_server.url + "/stills.html")
    page.set_input_files("#files", str(FACES_DEV / entry["file"]))
    page.wait_for_selector(".result[data-faces]", timeout=20000)
    assert int(page.get_attribute(".result", "data-faces")) >= len(entry["faces"])
    assert "hidden" in page.inner_text(".result .caption")
    page.wait_for_function("() => document.querySelector('.anonymized').naturalWidth > 0")
    shown = data_url_pixels(page.evaluate("""() => {
      const img = document.querySelector('.anonymized');
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
      canvas.getContext('2d').drawImage(img, 0, 0);
      return canvas.toDataURL('image/png');
    }"""))
    assert shown.shape[:2] == (entry["height"], entry["width"])
    assert page.get_attribute(".result .download", "download").endswith("-anonymized.jpg")
    page.close()


def test_still_image_page_retries_a_busy_server_after_retry_after(live_server, browser, easy_images):
    entry = easy_images[0]
    page = browser.new_page()
    busy: list[str] = []

    def first_answer_busy(route) -> None:
        # The first upload meets a server at capacity (as past server.max_wait_s); later ones go through.
        if not busy:
            busy.append(route.request.url)
            route.fulfill(status=503, headers={"Retry-After": "1"}, json={"error": "overloaded", "detail": "busy"})
        else:
            route.continue_()

    page.route("**/v1/anonymize*", first_answer_busy)
    page.goto(live_server.url + "/stills.html")
    page.set_input_files("#files", str(FACES_DEV / entry["file"]))
    page.wait_for_function("() => document.querySelector('.result .caption').textContent.includes('busy')")
    page.wait_for_selector(".result[data-faces]", timeout=20000)
    assert len(busy) == 1
    assert int(page.get_attribute(".result", "data-faces")) >= len(entry["faces"])
    assert page.query_selector(".result.failed") is None
    page.close()


def test_api_docs_render_from_the_server_alone(server, browser):
    page = browser.new_page()
    elsewhere: list[str] = []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server.url)
               else (elsewhere.append(route.request.url), route.abort()))
    page.goto(server.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=15000)
    page.wait_for_selector(".opblock-summary-path", timeout=15000)  # the routes are listed
    assert "streamer" in page.content()
    assert elsewhere == []  # no CDN, no fonts from anywhere else
