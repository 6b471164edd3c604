"""The heap keeps freed image buffers: worker threads decoding and encoding 1080p images one
after another do not fault in fresh pages for every image (streamer/heap.py says what that costs)."""

from __future__ import annotations

import subprocess
import sys

# Two threads decode, shrink and re-encode a 1080p JPEG, as the still-image workers do; prints
# the page faults per image. The argument "kept" applies the setting first (else glibc's defaults).
_WORKERS = """
import resource, sys, threading
import numpy as np, simplejpeg
from streamer.heap import keep_freed_buffers
if sys.argv[1] == "kept":
    assert keep_freed_buffers()
rng = np.random.default_rng(0)
jpeg = simplejpeg.encode_jpeg(rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8), quality=90)

def work(images):
    for _ in range(images):
        image = simplejpeg.decode_jpeg(jpeg)
        small = image[::2, ::2].copy()
        simplejpeg.encode_jpeg(image, quality=90)

def on_two_threads(images):
    threads = [threading.Thread(target=work, args=(images,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

on_two_threads(3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
on_two_threads(20)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40)
"""


def faults_per_image(mode: str) -> float:
    run = subprocess.run([sys.executable, "-c", _WORKERS, mode], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return float(run.stdout)


def test_worker_threads_reuse_freed_image_buffers():
    pages = 1920 * 1080 * 3 / 4096  # ~1,500 pages in one decoded image
    # glibc's defaults fault in 400-1,500 pages an image here, depending on how the threads interleave
    assert faults_per_image("kept") < pages / 10
