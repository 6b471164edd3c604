"""HTTP routes for live cameras: status, MJPEG streams, snapshots, and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..live.cameras import Camera, Cameras
from ..outputs.mjpeg import MEDIA_TYPE, mjpeg
from ..outputs.webrtc import WebRtcPeers

_NAME = Path(description="camera name from the configuration")


class NoFrameYet(RuntimeError):
    """The camera has not produced an anonymized frame yet; answered with 503."""


def camera_routes(cameras: Cameras, peers: WebRtcPeers) -> APIRouter:
    router = APIRouter()

    def status(pipeline: Camera) -> dict:
        encoders = peers.encoders(pipeline.name)
        return {
            **pipeline.status(),
            "webrtc_sessions": len(peers.sessions(pipeline.name)),
            # encoders with viewers; an idle one has stopped its thread
            "webrtc_encoders": {e.codec: {"viewers": e.viewers, "frames": e.frames} for e in encoders if e.viewers},
        }

    @router.get("/api/cameras", summary="Every camera with its state, rates, drops and last error")
    async def list_cameras() -> list[dict]:
        return [status(pipeline) for pipeline in cameras]

    @router.get("/api/cameras/{name}", summary="One camera's status")
    async def camera(name: str = _NAME) -> dict:
        return status(cameras.get(name))

    @router.get(
        "/api/cameras/{name}/frame.jpeg",
        summary="The newest anonymized frame",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 404: {}, 503: {}},
    )
    async def frame(name: str = _NAME, height: int | None = Query(None, ge=16, le=4320)) -> Response:
        pipeline = cameras.get(name)
        latest = pipeline.hub.latest
        if latest is None:
            raise NoFrameYet(f"camera {name!r} has no frame yet ({pipeline.state.value})")
        data = await asyncio.to_thread(pipeline.hub.jpeg, latest, height)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @router.get(
        "/api/cameras/{name}/stream.mjpeg",
        summary="Live anonymized MJPEG (multipart/x-mixed-replace)",
        response_class=StreamingResponse,
        responses={200: {"content": {MEDIA_TYPE: {}}}, 404: {}},
    )
    async def stream(
        name: str = _NAME,
        fps: float | None = Query(None, gt=0, le=60, description="most frames a second to send"),
        height: int | None = Query(None, ge=16, le=4320, description="scale frames down to this height"),
    ) -> StreamingResponse:
        pipeline = cameras.get(name)
        return StreamingResponse(
            mjpeg(pipeline.hub, pipeline.name, fps, height),
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router

