"""The HTTP API put together: still images (``stills``), live cameras (``cameras``, ``whep``),
health and readiness, the web UI. Every error is JSON ``{"error": code, "detail": text}``
(``error_handlers``), unknown paths and methods included."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..config import Settings
from ..live.cameras import Cameras
from ..outputs.webrtc import WebRtcPeers
from ..stills.workers import WorkerPool
from .cameras import camera_routes
from .error_handlers import add_error_handlers
from .errors import error_response
from .stills import STILL_PATHS, still_routes
from .uploads import Admission, RefuseWhenFull
from .whep import webrtc_routes

log = logging.getLogger("streamer.api")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"  # streamer/web, shipped in the package


def build_app(settings: Settings, cameras: Cameras) -> FastAPI:
    """The app for ``settings``, serving ``cameras`` (built by ``streamer.server.create_app``)."""
    pool = WorkerPool(
        settings.detector,
        workers=settings.server.workers,
        queue_size=settings.server.queue_size,
        max_wait_s=settings.server.max_wait_s,
    )

    admission = Admission(pool, settings.server.max_uploads)
    peers = WebRtcPeers(settings.webrtc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(pool.warm_up)
        cameras.start()
        app.state.ready = True
        log.info("ready: %d workers, detector %s", pool.workers, settings.detector.backend)
        try:
            yield
        finally:
            app.state.ready = False
            await peers.close_all()
            await asyncio.to_thread(cameras.stop)
            await asyncio.to_thread(pool.shutdown)

    app = FastAPI(
        title="streamer",
        version=__version__,
        summary="Face anonymization for images and video, on the CPU, offline.",
        lifespan=lifespan,
    )
    app.state.ready = False
    app.state.settings = settings
    app.state.pool = pool
    app.add_middleware(RefuseWhenFull, admission=admission, paths=STILL_PATHS)

    add_error_handlers(app)

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: detectors are loaded in every worker")
    async def readyz() -> Response:
        if not app.state.ready:
            return error_response(503, "not_ready", "models are loading")
        return JSONResponse({
            "status": "ready", "detector": settings.detector.backend, "workers": pool.workers,
            "jobs": pool.stats().as_json(),
        })

    app.include_router(still_routes(settings, pool, admission))
    app.include_router(camera_routes(cameras, peers, settings))
    app.include_router(webrtc_routes(cameras, peers))
    if WEB_DIR.is_dir():  # the browser UI; last, so that it never shadows an API route
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    else:
        log.warning("no web UI: %s is missing", WEB_DIR)
    return app
