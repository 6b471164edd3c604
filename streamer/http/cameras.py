"""HTTP routes for live cameras: status, where each runs (shards), MJPEG streams, snapshots, and
Prometheus metrics.

Every route that shows a camera depends on ``Access.camera_caller`` (401 without a login, 403 for
a camera not granted); the list shows only the cameras the caller may watch, and the camera's
source only to admins."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator, BaseModel, Field

from ..config import Settings
from ..live.cameras import Camera, Cameras
from ..live.hub import JPEG_HEIGHTS
from ..outputs.mjpeg import MEDIA_TYPE, mjpeg
from ..outputs.encoders import Encoders
from ..outputs.rtsp import RtspServer
from ..outputs.webrtc import WebRtcPeers
from ..shards import camera_map
from ..users import Role
from .audit import audit
from .auth import Access, Caller
from .viewings import HeldStream, Viewings

_HEIGHT = Query(None, description=f"scale frames down to this height: one of {', '.join(map(str, JPEG_HEIGHTS))}")


def _known_height(height: int) -> int:
    if height not in JPEG_HEIGHTS:
        raise ValueError(f"height must be one of {', '.join(map(str, JPEG_HEIGHTS))}")
    return height


Height = Annotated[int, AfterValidator(_known_height)]


class NoFrameYet(RuntimeError):
    """The camera has not produced an anonymized frame yet; answered with 503."""


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
    source: str | None = Field(description="the configured source, its password hidden; admins only (else null)")
    kind: str = Field(description="rtsp, v4l2, file or pattern")
    state: str = Field(description="starting, streaming, reconnecting, ended or stopped")
    fps: dict[str, float] = Field(
        description="frames a second over the last seconds: capture, detect (of them whole: of whole frames), output"
    )
    frames: dict[str, int] = Field(description="frames handled since start, by stage")
    dropped: dict[str, int] = Field(description="frames dropped before a stage because that stage was behind (the newest frame wins), by stage")
    fail_closed_frames: int = Field(description="frames hidden whole because detection was stale or failing")
    stage_errors: dict[str, int] = Field(description="times a stage raised and was restarted")
    faces: int = Field(description="faces hidden in the newest output frame")
    latency_ms: Latency | None = Field(description="capture to output over the newest frames; null before any")
    detect_wait_ms: Latency | None = Field(
        description="how long the newest detected frames waited for one of the detector threads all cameras share"
    )
    reconnects: int
    viewers: int = Field(description="open MJPEG streams")
    last_error: str | None
    detector: str = Field(description="ok, starting, stalled: ... or failing: ...")
    webrtc_sessions: int
    webrtc_encoders: dict[str, EncoderStatus] = Field(description="shared encoders with viewers (WebRTC and RTSP), by codec")
    shard: int = Field(description="the shard that runs this camera: this server's (server.shard; 0 unsharded)")
    outputs: dict[str, str] = Field(
        description="where to watch it: mjpeg, snapshot and whep (paths on this server), rtsp (a URL)"
    )


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


def camera_routes(
    cameras: Cameras, peers: WebRtcPeers, encoders: Encoders, settings: Settings, access: Access, viewings: Viewings,
    rtsp: RtspServer | None,
) -> APIRouter:
    router = APIRouter(responses={401: {"description": "not logged in"}, 403: {"description": "camera not granted"}})
    index, count = settings.server.shards
    shard_map = ShardMap(
        shard=index, shards=count, cameras=[CameraPlacement(**vars(placement)) for placement in camera_map(settings)]
    )

    def outputs(name: str, request: Request) -> dict[str, str]:
        base = f"/api/cameras/{quote(name)}"
        urls = {"mjpeg": f"{base}/stream.mjpeg", "snapshot": f"{base}/frame.jpeg", "whep": f"{base}/whep"}
        if rtsp is not None:
            host = request.url.hostname or "127.0.0.1"
            urls["rtsp"] = f"rtsp://{f'[{host}]' if ':' in host else host}:{rtsp.port}/{quote(name)}"
        return urls

    def status(pipeline: Camera, caller: Caller, request: Request) -> CameraStatus:
        shared = encoders.of(pipeline.name)
        return CameraStatus(
            outputs=outputs(pipeline.name, request),
            **{**pipeline.status(), **({} if caller.user.role is Role.admin else {"source": None})},
            webrtc_sessions=len(peers.sessions(pipeline.name)),
            # encoders with viewers; an idle one has stopped its thread
            webrtc_encoders={e.codec: EncoderStatus(viewers=e.viewers, frames=e.frames, keyframes=e.keyframes)
                             for e in shared if e.viewers},
            shard=index,
        )

    @router.get("/api/cameras", summary="The cameras you may watch, with state, rates, drops and last error")
    async def list_cameras(request: Request, caller: Caller = Depends(access.caller)) -> list[CameraStatus]:
        return [status(pipeline, caller, request) for pipeline in cameras if caller.user.sees(pipeline.name)]

    @router.get("/api/shards", summary="Where every configured camera runs: its shard and that server's URL",
                dependencies=[Depends(access.all_cameras_caller)])
    async def shards() -> ShardMap:
        return shard_map

    @router.get("/api/cameras/{name}", summary="One camera's status", responses={404: {}})
    async def camera(name: str, request: Request, caller: Caller = Depends(access.camera_caller)) -> CameraStatus:
        return status(cameras.get(name), caller, request)

    @router.get(
        "/api/cameras/{name}/frame.jpeg",
        summary="The newest anonymized frame",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 404: {}, 503: {}},
    )
    async def frame(name: str, height: Height | None = _HEIGHT, caller: Caller = Depends(access.camera_caller)) -> Response:
        pipeline = cameras.get(name)
        latest = pipeline.hub.latest
        if latest is None:
            raise NoFrameYet(f"camera {name!r} has no frame yet ({pipeline.state.value})")
        data = await asyncio.to_thread(pipeline.hub.jpeg, latest, height)
        audit("snapshot", user=caller.user.name, camera=name, address=caller.address)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @router.get(
        "/api/cameras/{name}/stream.mjpeg",
        summary="Live anonymized MJPEG (multipart/x-mixed-replace)",
        response_class=StreamingResponse,
        responses={200: {"content": {MEDIA_TYPE: {}}}, 404: {},
                   503: {"description": "server.max_streams or server.max_streams_per_user reached"}},
    )
    async def stream(
        name: str,
        fps: float | None = Query(None, gt=0, le=60, description="most frames a second to send"),
        height: Height | None = _HEIGHT,
        caller: Caller = Depends(access.camera_caller),
    ) -> StreamingResponse:
        pipeline = cameras.get(name)
        return HeldStream(
            mjpeg(pipeline.hub, pipeline.name, fps, height),
            viewings.take(caller, name, "mjpeg"),
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get("/metrics", summary="Prometheus metrics (they name every camera: needs access to all)",
                response_class=Response, dependencies=[Depends(access.all_cameras_caller)])
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
