"""HTTP routes for live cameras: status, where each runs (shards), MJPEG streams, snapshots, and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from ..config import Settings
from ..live.cameras import Camera, Cameras
from ..outputs.mjpeg import MEDIA_TYPE, mjpeg
from ..outputs.webrtc import WebRtcPeers
from ..shards import camera_map

_NAME = Path(description="camera name from the configuration")


class NoFrameYet(RuntimeError):
    """The camera has not produced an anonymized frame yet; answered with 503."""


class Latency(BaseModel):
    p50: float = Field(description="median, ms")
    p95: float = Field(description="95th percentile, ms")


class EncoderStatus(BaseModel):
    viewers: int
    frames: int = Field(description="frames encoded since the encoder started")


class CameraStatus(BaseModel):
    """What ``GET /api/cameras`` says of one camera (the schema OpenAPI shows)."""

    name: str
    source: str = Field(description="the configured source, its password hidden")
    kind: str = Field(description="rtsp, v4l2, file or pattern")
    state: str = Field(description="starting, streaming, reconnecting, ended or stopped")
    fps: dict[str, float] = Field(description="frames a second over the last seconds: capture, detect, output")
    frames: dict[str, int] = Field(description="frames handled since start, by stage")
    dropped: dict[str, int] = Field(description="frames dropped before a stage because that stage was behind (the newest frame wins), by stage")
    fail_closed_frames: int = Field(description="frames hidden whole because detection was stale or failing")
    stage_errors: dict[str, int] = Field(description="times a stage raised and was restarted")
    faces: int = Field(description="faces hidden in the newest output frame")
    latency_ms: Latency | None = Field(description="capture to output over the newest frames; null before any")
    reconnects: int
    viewers: int = Field(description="open MJPEG streams")
    last_error: str | None
    detector: str = Field(description="ok, starting, stalled: ... or failing: ...")
    webrtc_sessions: int
    webrtc_encoders: dict[str, EncoderStatus] = Field(description="shared encoders with viewers, by codec")
    shard: int = Field(description="the shard that runs this camera: this server's (server.shard; 0 unsharded)")


class CameraPlacement(BaseModel):
    name: str
    shard: int = Field(description="the shard whose server runs this camera")
    local: bool = Field(description="this server runs it")
    url: str | None = Field(description="that server's URL (server.shard_url); null when not configured")


class ShardMap(BaseModel):
    """What ``GET /api/shards`` says: where every configured camera runs."""

    shard: int = Field(description="this server's shard")
    shards: int = Field(description="how many shards the cameras are spread over")
    cameras: list[CameraPlacement]


def camera_routes(cameras: Cameras, peers: WebRtcPeers, settings: Settings) -> APIRouter:
    router = APIRouter()
    index, count = settings.server.shards
    shard_map = ShardMap(
        shard=index, shards=count, cameras=[CameraPlacement(**vars(placement)) for placement in camera_map(settings)]
    )

    def status(pipeline: Camera) -> CameraStatus:
        encoders = peers.encoders(pipeline.name)
        return CameraStatus(
            **pipeline.status(),
            webrtc_sessions=len(peers.sessions(pipeline.name)),
            # encoders with viewers; an idle one has stopped its thread
            webrtc_encoders={e.codec: EncoderStatus(viewers=e.viewers, frames=e.frames) for e in encoders if e.viewers},
            shard=index,
        )

    @router.get("/api/cameras", summary="Every camera with its state, rates, drops and last error")
    async def list_cameras() -> list[CameraStatus]:
        return [status(pipeline) for pipeline in cameras]

    @router.get("/api/shards", summary="Where every configured camera runs: its shard and that server's URL")
    async def shards() -> ShardMap:
        return shard_map

    @router.get("/api/cameras/{name}", summary="One camera's status", responses={404: {}})
    async def camera(name: str = _NAME) -> CameraStatus:
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

