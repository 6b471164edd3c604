# streamer: the HTTP API on port 8000, as a non-root user.
FROM python:3.11-slim

# libGL and GLib are loaded by the OpenCV build that mediapipe pulls in.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Every dependency at the version and sha256 hash in the lock (see the Makefile's `make lock`),
# in its own layer, rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY streamer ./streamer
# A regular (not editable) install: the default settings, the demo camera's clip and the web UI
# are package data. Without build isolation, so that setuptools comes from the lock. The
# CenterFace model is prepared here, as root, into /usr/local/share/streamer/models, and
# matplotlib's font list into /usr/local/share/streamer/matplotlib, which the user owns: matplotlib
# wants its folder writable, or it makes a temporary one.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf /app/streamer /app/build \
    && python -m streamer.models \
    && python -m streamer.offline \
    && useradd --create-home --uid 10001 streamer \
    && chown -R streamer /usr/local/share/streamer/matplotlib

USER streamer
ENV STREAMER_SERVER__HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 8000 8554
# /readyz on the port the server listens on: STREAMER_SERVER__PORT if it is set, else 8000.
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import os, sys, urllib.request; port = os.environ.get('STREAMER_SERVER__PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=2).status != 200)"
CMD ["streamer", "serve"]
