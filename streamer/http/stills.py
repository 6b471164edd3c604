"""HTTP routes for still images: ``POST /v1/anonymize`` and ``POST /v1/detect``.

CPU work never runs on the event loop: each request's decode -> detect -> anonymize -> encode is
one job on the bounded ``WorkerPool``, admitted (or refused with 503) before its body is read.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ..config import Mode, Settings, Shape
from ..faces.detection import Detector
from ..stills.images import FORMATS
from ..stills.job import anonymize_image, detect_image
from ..stills.workers import Stop, WorkerPool
from .auth import Access
from .uploads import Admission, disconnected, read_image

T = TypeVar("T")
STILL_PATHS = ("/v1/anonymize", "/v1/detect")  # the routes the admission middleware guards
# The lowest threshold a request may ask for: at 0 a 1080p photo yields thousands of "faces" and
# costs 9x the CPU of the default; at 0.05 about as much as the default (README, Security).
MIN_THRESHOLD = 0.05

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


def still_routes(settings: Settings, pool: WorkerPool, admission: Admission, access: Access) -> APIRouter:
    router = APIRouter(dependencies=[Depends(access.caller)], responses={401: {"description": "not logged in"}})

    async def process(request: Request, job: Callable[[bytes, Detector, Stop], T]) -> T:
        """Admit a still-image request, read its body and run ``job(body, detector, stop)`` on the pool.

        Past capacity the answer is 503 before the body is read, so a flood costs neither memory nor
        CPU; a request whose client disconnects is dropped from the queue, or stopped between stages.
        """
        with admission.holding():
            data = await read_image(request, settings.image.max_bytes, settings.server.body_timeout_s)
            return await pool.run(lambda det, stop: job(data, det, stop), gone=lambda: disconnected(request))

    @router.post(
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
        threshold: float | None = Query(None, ge=MIN_THRESHOLD, le=1.0, description="minimum face score"),
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

    @router.post(
        "/v1/detect",
        summary="Find the faces in an image",
        description='Answers `{"width": W, "height": H, "faces": [{"box": [x, y, w, h], "score": s}]}` '
        "with boxes in pixels of the (upright) input image, before padding.",
        openapi_extra=_IMAGE_BODY,
        responses=_ERRORS,
    )
    async def detect(
        request: Request,
        threshold: float | None = Query(None, ge=MIN_THRESHOLD, le=1.0, description="minimum face score"),
    ) -> dict:
        score = settings.detector.threshold if threshold is None else threshold
        result = await process(request, lambda data, det, stop: detect_image(data, det, score, settings.image, stop.check))
        return result.as_json()

    return router
