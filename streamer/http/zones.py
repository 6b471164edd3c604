"""Privacy zones over HTTP: anyone who may watch a camera reads its zones; an admin replaces them,
which saves them to the zones file and hides them from the camera's next frame on."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from ..config import ZoneSettings
from ..live.cameras import Cameras
from ..zones import ZonesFile
from .audit import audit
from .auth import Access, Caller
from .bodies import read_body

_MAX_BODY = 256 * 1024


class Zones(BaseModel):
    zones: tuple[ZoneSettings, ...] = Field(max_length=32, description="the camera's privacy zones, all of them")


def zone_routes(cameras: Cameras, zones_file: ZonesFile, access: Access, body_timeout_s: float) -> APIRouter:
    router = APIRouter(responses={401: {"description": "not logged in"}, 403: {"description": "camera not granted"}})

    @router.get("/api/cameras/{name}/zones", summary="A camera's privacy zones")
    async def get_zones(name: str, _caller: Caller = Depends(access.camera_caller)) -> Zones:
        return Zones(zones=cameras.get(name).zones)

    @router.put(
        "/api/cameras/{name}/zones",
        summary="Replace a camera's privacy zones (admins): saved, and hidden from the next frame on",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": Zones.model_json_schema()}}}},
        responses={404: {}, 409: {"description": "the zones file cannot be read"}, 422: {}},
    )
    async def put_zones(request: Request, name: str, caller: Caller = Depends(access.camera_admin)) -> Zones:
        camera = cameras.get(name)
        try:
            given = Zones.model_validate_json(await read_body(request, _MAX_BODY, body_timeout_s))
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        # A file broken since the start raises ConfigError: 409, and nothing changes.
        await asyncio.to_thread(zones_file.save, name, given.zones)
        camera.set_zones(given.zones)
        audit("zones_changed", user=caller.user.name, camera=name, zones=len(given.zones), address=caller.address)
        return given

    return router
