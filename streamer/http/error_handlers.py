"""What each error a route raises becomes: the one JSON envelope of ``errors``, with its status
and headers (``Retry-After`` where a retry can help). A request whose client left gets no body."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ..config import ConfigError
from ..live.cameras import CameraNotFound
from ..outputs.webrtc import SessionError
from ..stills.images import ImageError
from ..stills.workers import Abandoned, Overloaded
from .auth import AuthError
from .cameras import NoFrameYet
from .errors import error_response
from .viewings import TooManyStreams
from .bodies import BodyError

# Status logged for a request whose client went away before its answer (nginx's convention).
CLIENT_GONE = 499


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error the routes raise in the one envelope, with its status and headers."""

    @app.exception_handler(ImageError)
    async def image_error(_request: Request, exc: ImageError) -> JSONResponse:
        return error_response(exc.status, exc.code, str(exc))

    @app.exception_handler(BodyError)
    async def body_error(_request: Request, exc: BodyError) -> JSONResponse:
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

    @app.exception_handler(ConfigError)
    async def file_invalid(_request: Request, exc: ConfigError) -> JSONResponse:
        # a file the server writes (zones) was broken by hand since the start
        return error_response(409, "file_invalid", str(exc))

    @app.exception_handler(AuthError)
    async def auth_error(_request: Request, exc: AuthError) -> JSONResponse:
        return error_response(exc.status, exc.code, str(exc), exc.headers)

    @app.exception_handler(TooManyStreams)
    async def too_many_streams(_request: Request, exc: TooManyStreams) -> JSONResponse:
        return error_response(503, "too_many_streams", str(exc), {"Retry-After": "5"})

    @app.exception_handler(SessionError)
    async def session_error(_request: Request, exc: SessionError) -> JSONResponse:
        headers = {"Retry-After": "5"} if exc.status == 503 else None
        return error_response(exc.status, "webrtc", str(exc), headers)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        # Starlette's own answers: no such path (404), method not allowed (405), ...
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(422, "invalid_parameter", problems)
