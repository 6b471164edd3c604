"""HTTP routes for live cameras: status, MJPEG streams, snapshots, and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Callable

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator, BaseModel, Field

from ..live.cameras import Camera, Cameras
from ..live.hub import JPEG_HEIGHTS
from ..outputs.mjpeg import MEDIA_TYPE, mjpeg
from ..outputs.webrtc import WebRtcPeers

_NAME = Path(description="camera name from the configuration")
_HEIGHT = Query(None, description=f"scale frames down to this height: one of {', '.join(map(str, JPEG_HEIGHTS))}")


def _known_height(height: int) -> int:
    if height not in JPEG_HEIGHTS:
        raise ValueError(f"height must be one of {', '.join(map(str, JPEG_HEIGHTS))}")
    return height


Height = Annotated[int, AfterValidator(_known_height)]


class NoFrameYet(RuntimeError):
    """The camera has not produced an anonymized frame yet; answered with 503."""


class TooManyStreams(RuntimeError):
    """Every MJPEG stream slot (``server.max_streams``) is taken; answered with 503."""


class StreamSlots:
    """Open MJPEG streams over all cameras, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0  # changed on the event loop only

    def take(self) -> None:
        if self.taken >= self.limit:
            raise TooManyStreams(f"all {self.limit} MJPEG streams are in use")
        self.taken += 1

    def give_back(self) -> None:
        self.taken -= 1


class _HeldStream(StreamingResponse):
    """A streaming response that gives its slot back when it ends, however it ends (even when the
    client leaves before the first part, when the body's generator never starts)."""

    def __init__(self, content: Any, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


class Latency(BaseModel):
    p50: float = Field(description="median, ms")
    p95: float = Field(description="95th percentile, ms")


class EncoderStatus(BaseModel):
    viewers: int
    frames: int = Field(description="frames encoded since the encoder started")
    keyframes: int = Field(description="keyframes among them (periodic, for new viewers, asked for by viewers)")


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


def camera_routes(cameras: Cameras, peers: WebRtcPeers, max_streams: int) -> APIRouter:
    router = APIRouter()
    slots = StreamSlots(max_streams)

    def status(pipeline: Camera) -> CameraStatus:
        encoders = peers.encoders(pipeline.name)
        return CameraStatus(
            **pipeline.status(),
            webrtc_sessions=len(peers.sessions(pipeline.name)),
            # encoders with viewers; an idle one has stopped its thread
            webrtc_encoders={e.codec: EncoderStatus(viewers=e.viewers, frames=e.frames, keyframes=e.keyframes) for e in encoders if e.viewers},
        )

    @router.get("/api/cameras", summary="Every camera with its state, rates, drops and last error")
    async def list_cameras() -> list[CameraStatus]:
        return [status(pipeline) for pipeline in cameras]

    @router.get("/api/cameras/{name}", summary="One camera's status", responses={404: {}})
    async def camera(name: str = _NAME) -> CameraStatus:
        return status(cameras.get(name))

    @router.get(
        "/api/cameras/{name}/frame.jpeg",
        summary="The newest anonymized frame",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 404: {}, 503: {}},
    )
    async def frame(name: str = _NAME, height: Height | None = _HEIGHT) -> Response:
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
        responses={200: {"content": {MEDIA_TYPE: {}}}, 404: {}, 503: {"description": "server.max_streams reached"}},
    )
    async def stream(
        name: str = _NAME,
        fps: float | None = Query(None, gt=0, le=60, description="most frames a second to send"),
        height: Height | None = _HEIGHT,
    ) -> StreamingResponse:
        pipeline = cameras.get(name)
        slots.take()
        return _HeldStream(
            mjpeg(pipeline.hub, pipeline.name, fps, height),
            slots.give_back,
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router

