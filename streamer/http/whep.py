"""WebRTC signalling: WHEP (``application/sdp``, so WHEP players work unchanged) and a JSON offer.

aiortc gathers every ICE candidate before it answers and has no trickle ICE, so the answer is
complete and PATCH (trickle) is refused; a browser should likewise finish gathering before it
posts its offer.
"""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from ..live.cameras import Cameras
from ..outputs.webrtc import SessionError, WebRtcPeers
from .bodies import read_body
from .errors import error_response

_SDP = "application/sdp"
_NAME = Path(description="camera name from the configuration")
_MAX_SDP_BYTES = 64 * 1024


class Offer(BaseModel):
    sdp: str
    type: str = "offer"


def webrtc_routes(cameras: Cameras, peers: WebRtcPeers, body_timeout_s: float) -> APIRouter:
    """The signalling routes; an offer's body is read with a cap and a deadline before anything else."""
    router = APIRouter()

    @router.options("/api/cameras/{name}/whep", summary="WHEP: what the endpoint accepts")
    async def whep_options(name: str = _NAME) -> Response:
        cameras.get(name)
        return Response(status_code=204, headers={"Accept-Post": _SDP, "Allow": "OPTIONS, POST"})

    @router.post(
        "/api/cameras/{name}/whep",
        summary="WHEP: start watching a camera",
        description="Body: the SDP offer (`Content-Type: application/sdp`), all ICE candidates gathered. "
        "Answer: `201 Created`, the SDP answer, and `Location` of the session (DELETE it to stop).",
        status_code=201,
        response_class=Response,
        responses={201: {"content": {_SDP: {}}}, 400: {}, 404: {}, 415: {}, 503: {}},
        openapi_extra={"requestBody": {"required": True, "content": {_SDP: {"schema": {"type": "string"}}}}},
    )
    async def whep(request: Request, name: str = _NAME) -> Response:
        pipeline = cameras.get(name)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != _SDP:
            raise SessionError(415, "send the offer with Content-Type: application/sdp")
        body = await read_body(request, _MAX_SDP_BYTES, body_timeout_s)
        session = await peers.answer(name, pipeline.hub, body.decode("utf-8", errors="replace"))
        location = f"/api/cameras/{name}/whep/{session.id}"
        return Response(
            session.pc.localDescription.sdp, status_code=201, media_type=_SDP,
            headers={"Location": location, "ETag": f'"{session.id}"'},
        )

    @router.delete("/api/cameras/{name}/whep/{session_id}", summary="WHEP: stop watching", status_code=200)
    async def whep_delete(session_id: str, name: str = _NAME) -> Response:
        session = peers.get(session_id)
        if session is None or session.camera != name:
            return error_response(404, "session_not_found", "no such session")
        await peers.close(session_id)
        return Response(status_code=200)

    @router.patch("/api/cameras/{name}/whep/{session_id}", summary="WHEP trickle ICE: not supported")
    async def whep_patch(session_id: str, name: str = _NAME) -> Response:
        return error_response(
            405, "trickle_ice_unsupported", "gather all candidates before posting the offer", {"Allow": "DELETE"}
        )

    @router.post(
        "/api/cameras/{name}/offer",
        summary="Start watching a camera (JSON offer, as in aiortc's examples)",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": Offer.model_json_schema()}}}},
    )
    async def offer(request: Request, name: str = _NAME) -> dict:
        pipeline = cameras.get(name)
        try:
            body = Offer.model_validate_json(await read_body(request, _MAX_SDP_BYTES, body_timeout_s))
        except ValidationError as exc:
            raise SessionError(422, f"expected JSON {{\"sdp\": ..., \"type\": \"offer\"}}: {exc.errors()[0]['msg']}") from None
        if body.type != "offer":
            raise SessionError(400, f"expected an offer, got {body.type!r}")
        session = await peers.answer(name, pipeline.hub, body.sdp)
        return {"sdp": session.pc.localDescription.sdp, "type": "answer", "session": session.id}

    @router.delete("/api/cameras/{name}/sessions/{session_id}", summary="Stop a session opened with /offer")
    async def close_session(session_id: str, name: str = _NAME) -> Response:
        return await whep_delete(session_id, name)

    return router
