# streamer: the HTTP API on port 8000, as a non-root user.
FROM python:3.11-slim

# libGL and GLib are loaded by the OpenCV build that mediapipe pulls in.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streamer ./streamer
COPY configs ./configs
COPY web ./web
COPY assets ./assets
# Installed in place (-e) so that configs/, web/ and assets/ sit beside the package as in a
# checkout. The CenterFace model is prepared here, as root, into /usr/local/share/streamer/models.
RUN pip install --no-cache-dir -e . \
    && python -m streamer.models \
    && useradd --create-home --uid 10001 streamer

USER streamer
ENV STREAMER_SERVER__HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"
CMD ["streamer", "serve"]
