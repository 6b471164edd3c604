"""WebRTC signalling: WHEP (``application/sdp``, so WHEP players work unchanged) and a JSON offer.

aiortc gathers every ICE candidate before it answers and has no trickle ICE, so the answer is
complete and PATCH (trickle) is refused; a browser should likewise finish gathering before it
posts its offer.

Every route needs a caller who may watch the camera (``Access.camera_caller``); a session counts
against its user's streams (``Viewings``) and only its user or an admin may end it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from ..live.cameras import Cameras
from ..outputs.webrtc import Session, SessionError, WebRtcPeers
from ..users import Role
from .auth import Access, Caller
from .bodies import read_body
from .errors import error_response
from .viewings import Viewings

_SDP = "application/sdp"
_MAX_SDP_BYTES = 64 * 1024


class Offer(BaseModel):
    sdp: str
    type: str = "offer"


def webrtc_routes(
    cameras: Cameras, peers: WebRtcPeers, access: Access, viewings: Viewings, body_timeout_s: float
) -> APIRouter:
    """The signalling routes; an offer's body is read with a cap and a deadline before anything else."""
    router = APIRouter(responses={401: {"description": "not logged in"}, 403: {"description": "camera not granted"}})

    async def open_session(caller: Caller, name: str, offer_sdp: str) -> Session:
        pipeline = cameras.get(name)
        viewing = viewings.take(caller, name, "webrtc")
        try:
            session = await peers.answer(name, pipeline.hub, offer_sdp, caller.user.name, viewing.end)
        except BaseException:
            viewing.end()
            raise
        viewing.begin()
        return session

    async def close_session(caller: Caller, name: str, session_id: str) -> Response:
        session = peers.get(session_id)
        mine = session is not None and (session.viewer == caller.user.name or caller.user.role is Role.admin)
        if session is None or session.camera != name or not mine:
            return error_response(404, "session_not_found", "no such session")
        await peers.close(session_id)
        return Response(status_code=200)

    @router.options("/api/cameras/{name}/whep", summary="WHEP: what the endpoint accepts")
    async def whep_options(name: str, _caller: Caller = Depends(access.camera_caller)) -> Response:
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
    async def whep(request: Request, name: str, caller: Caller = Depends(access.camera_caller)) -> Response:
        cameras.get(name)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != _SDP:
            raise SessionError(415, "send the offer with Content-Type: application/sdp")
        body = await read_body(request, _MAX_SDP_BYTES, body_timeout_s)
        session = await open_session(caller, name, body.decode("utf-8", errors="replace"))
        location = f"/api/cameras/{name}/whep/{session.id}"
        return Response(
            session.pc.localDescription.sdp, status_code=201, media_type=_SDP,
            headers={"Location": location, "ETag": f'"{session.id}"'},
        )

    @router.delete("/api/cameras/{name}/whep/{session_id}", summary="WHEP: stop watching", status_code=200)
    async def whep_delete(name: str, session_id: str, caller: Caller = Depends(access.camera_caller)) -> Response:
        return await close_session(caller, name, session_id)

    @router.patch("/api/cameras/{name}/whep/{session_id}", summary="WHEP trickle ICE: not supported")
    async def whep_patch(name: str, session_id: str, _caller: Caller = Depends(access.camera_caller)) -> Response:
        return error_response(
            405, "trickle_ice_unsupported", "gather all candidates before posting the offer", {"Allow": "DELETE"}
        )

    @router.post(
        "/api/cameras/{name}/offer",
        summary="Start watching a camera (JSON offer, as in aiortc's examples)",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": Offer.model_json_schema()}}}},
    )
    async def offer(request: Request, name: str, caller: Caller = Depends(access.camera_caller)) -> dict:
        cameras.get(name)
        try:
            body = Offer.model_validate_json(await read_body(request, _MAX_SDP_BYTES, body_timeout_s))
        except ValidationError as exc:
            raise SessionError(422, f"expected JSON {{\"sdp\": ..., \"type\": \"offer\"}}: {exc.errors()[0]['msg']}") from None
        if body.type != "offer":
            raise SessionError(400, f"expected an offer, got {body.type!r}")
        session = await open_session(caller, name, body.sdp)
        return {"sdp": session.pc.localDescription.sdp, "type": "answer", "session": session.id}

    @router.delete("/api/cameras/{name}/sessions/{session_id}", summary="Stop a session opened with /offer")
    async def offer_delete(name: str, session_id: str, caller: Caller = Depends(access.camera_caller)) -> Response:
        return await close_session(caller, name, session_id)

    return router
