"""The HTTP API: still images, live cameras (see ``cameras``), health and readiness.

CPU work never runs on the event loop: each request's decode -> detect -> anonymize -> encode is
one job on the bounded ``WorkerPool``. Every error is JSON ``{"error": code, "detail": text}``.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Callable, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..config import Mode, Settings, Shape
from ..faces.detection import Detector
from ..live.cameras import CameraNotFound, Cameras
from ..outputs.webrtc import SessionError, WebRtcPeers
from ..stills.images import FORMATS, ImageError
from ..stills.job import anonymize_image, detect_image
from ..stills.workers import Abandoned, Overloaded, Stop, WorkerPool
from .cameras import NoFrameYet, camera_routes
from .errors import error_response
from .uploads import Admission, RefuseWhenFull, UploadError, disconnected, read_image
from .whep import webrtc_routes

log = logging.getLogger("streamer.api")
T = TypeVar("T")
# Status logged for a request whose client went away before its answer (nginx's convention).
CLIENT_GONE = 499

WEB_DIR = Path(__file__).resolve().parent.parent / "web"  # streamer/web, shipped in the package

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            **{media: {"schema": {"type": "string", "format": "binary"}} for media in sorted(FORMATS.values())},
        },
    }
}
_ERRORS = {
    status: {"description": text}
    for status, text in {
        400: "the image is empty, broken or not an image",
        413: "the upload is over the byte limit or the image over the pixel limit",
        415: "not a JPEG, PNG or WebP image",
        422: "a query parameter is out of range",
        503: "the server is at capacity; retry after Retry-After seconds",
    }.items()
}


def build_app(settings: Settings, cameras: Cameras) -> FastAPI:
    """The app for ``settings``, serving ``cameras`` (built by ``streamer.server.create_app``)."""
    pool = WorkerPool(
        settings.detector,
        workers=settings.server.workers,
        queue_size=settings.server.queue_size,
        max_wait_s=settings.server.max_wait_s,
    )

    admission = Admission(pool, settings.server.max_uploads)

    async def process(request: Request, job: Callable[[bytes, Detector, Stop], T]) -> T:
        """Admit a still-image request, read its body and run ``job(body, detector, stop)`` on the pool.

        Past capacity the answer is 503 before the body is read, so a flood costs neither memory nor
        CPU; a request whose client disconnects is dropped from the queue, or stopped between stages.
        """
        with admission.holding():
            data = await read_image(request, settings.image.max_bytes)
            return await pool.run(lambda det, stop: job(data, det, stop), gone=lambda: disconnected(request))

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
    app.add_middleware(RefuseWhenFull, admission=admission, paths=("/v1/anonymize", "/v1/detect"))

    @app.exception_handler(ImageError)
    async def image_error(_request: Request, exc: ImageError) -> JSONResponse:
        return error_response(exc.status, exc.code, str(exc))

    @app.exception_handler(UploadError)
    async def upload_error(_request: Request, exc: UploadError) -> JSONResponse:
        return error_response(exc.status, exc.code, str(exc))

    @app.exception_handler(Overloaded)
    async def overloaded(_request: Request, exc: Overloaded) -> JSONResponse:
        return error_response(503, "overloaded", str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(Abandoned)
    async def abandoned(_request: Request, _exc: Abandoned) -> Response:
        return Response(status_code=CLIENT_GONE)  # nobody is left to read it

    @app.exception_handler(CameraNotFound)
    async def camera_not_found(_request: Request, exc: CameraNotFound) -> JSONResponse:
        return error_response(404, "camera_not_found", str(exc))

    @app.exception_handler(NoFrameYet)
    async def no_frame_yet(_request: Request, exc: NoFrameYet) -> JSONResponse:
        return error_response(503, "no_frame_yet", str(exc), {"Retry-After": "1"})

    @app.exception_handler(SessionError)
    async def session_error(_request: Request, exc: SessionError) -> JSONResponse:
        headers = {"Retry-After": "5"} if exc.status == 503 else None
        return error_response(exc.status, "webrtc", str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(422, "invalid_parameter", problems)

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

    @app.post(
        "/v1/anonymize",
        summary="Anonymize the faces in an image",
        description="Send the image as the multipart field `file` or as the raw body. The answer is the "
        "image in the same format with every face hidden and no metadata; `X-Faces-Detected` "
        "counts the faces.",
        openapi_extra=_IMAGE_BODY,
        responses={200: {"content": {m: {} for m in sorted(FORMATS.values())}}, **_ERRORS},
        response_class=Response,
    )
    async def anonymize(
        request: Request,
        mode: Mode | None = Query(None, description="blur, pixelate or fill"),
        threshold: float | None = Query(None, ge=0.0, le=1.0, description="minimum face score"),
        padding: float | None = Query(None, ge=1.0, le=4.0, description="scale factor around each face box"),
        shape: Shape | None = Query(None, description="box or ellipse"),
    ) -> Response:
        overrides = {k: v for k, v in {"mode": mode, "padding": padding, "shape": shape}.items() if v is not None}
        anonymizer = settings.anonymizer.model_copy(update=overrides)
        score = settings.detector.threshold if threshold is None else threshold
        result = await process(
            request, lambda data, det, stop: anonymize_image(data, det, score, anonymizer, settings.image, stop.check)
        )
        return Response(
            result.data,
            media_type=FORMATS[result.format],
            headers={"X-Faces-Detected": str(len(result.faces)), "Cache-Control": "no-store"},
        )

    @app.post(
        "/v1/detect",
        summary="Find the faces in an image",
        description='Answers `{"width": W, "height": H, "faces": [{"box": [x, y, w, h], "score": s}]}` '
        "with boxes in pixels of the (upright) input image, before padding.",
        openapi_extra=_IMAGE_BODY,
        responses=_ERRORS,
    )
    async def detect(
        request: Request,
        threshold: float | None = Query(None, ge=0.0, le=1.0, description="minimum face score"),
    ) -> dict:
        score = settings.detector.threshold if threshold is None else threshold
        result = await process(request, lambda data, det, stop: detect_image(data, det, score, settings.image, stop.check))
        return result.as_json()

    app.include_router(camera_routes(cameras, peers))
    app.include_router(webrtc_routes(cameras, peers))
    if WEB_DIR.is_dir():  # the browser UI; last, so that it never shadows an API route
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    else:
        log.warning("no web UI: %s is missing", WEB_DIR)
    return app
