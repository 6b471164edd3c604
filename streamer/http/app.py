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
from fastapi_offline import FastAPIOffline

from .. import __version__
from ..config import Settings
from ..live.cameras import Cameras
from ..outputs.encoders import Encoders
from ..outputs.webrtc import WebRtcPeers
from ..stills.workers import WorkerPool
from ..users import Users
from ..zones import ZonesFile
from .audit import append_to
from .auth import Access
from .cameras import camera_routes
from .error_handlers import add_error_handlers
from .errors import error_response
from .rtsp import rtsp_server
from .security import secure
from .stills import STILL_PATHS, still_routes
from .uploads import Admission, RefuseWhenFull
from .viewings import Viewings
from .whep import webrtc_routes
from .zones import zone_routes

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
    encoders = Encoders(settings.webrtc)
    peers = WebRtcPeers(settings.webrtc, encoders)
    users_file = settings.auth.users_file
    access = Access(settings.auth, Users(Path(users_file)) if users_file else None)
    viewings = Viewings(settings.server.max_streams, settings.server.max_streams_per_user)
    rtsp = rtsp_server(cameras, encoders, access, viewings, settings.server.host, settings.rtsp.port) if settings.rtsp.enabled else None
    if settings.auth.audit_log:
        append_to(settings.auth.audit_log)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(pool.warm_up)
        cameras.start()
        if rtsp is not None:
            await rtsp.start()  # a port in use stops the start, with the reason in the log
        app.state.ready = True
        log.info("ready: %d workers, detector %s", pool.workers, settings.detector.backend)
        try:
            yield
        finally:
            app.state.ready = False
            if rtsp is not None:
                await rtsp.stop()
            await peers.close_all()
            await asyncio.to_thread(cameras.stop)
            await asyncio.to_thread(pool.shutdown)

    # /docs (Swagger UI) from files in the fastapi-offline package: FastAPI's own page loads its
    # scripts from a CDN, which an offline site cannot reach and which would learn who reads it.
    # No /redoc: ReDoc's page fetches its logo from its vendor's CDN.
    app = FastAPIOffline(
        redoc_url=None,
        title="streamer",
        version=__version__,
        summary="Face anonymization for images and video, on the CPU, offline.",
        lifespan=lifespan,
    )
    app.state.ready = False
    app.state.settings = settings
    app.state.pool = pool
    app.add_middleware(RefuseWhenFull, admission=admission, paths=STILL_PATHS)
    secure(app, settings.server)

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

    app.include_router(access.routes(settings.server.body_timeout_s))
    app.include_router(still_routes(settings, pool, admission, access))
    app.include_router(camera_routes(cameras, peers, encoders, settings, access, viewings, rtsp))
    app.include_router(webrtc_routes(cameras, peers, access, viewings, settings.server.body_timeout_s))
    zones_file = ZonesFile(Path(settings.pipeline.zones_file))
    app.include_router(zone_routes(cameras, zones_file, access, settings.server.body_timeout_s))
    if WEB_DIR.is_dir():  # the browser UI; last, so that it never shadows an API route
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    else:
        log.warning("no web UI: %s is missing", WEB_DIR)
    return app
