"""The one shape of every error the HTTP API answers: JSON ``{"error": code, "detail": text}``."""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse


def error_body(code: str, detail: str) -> bytes:
    """The JSON bytes of an error, for code that answers below FastAPI (ASGI middleware)."""
    return json.dumps({"error": code, "detail": detail}).encode()


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)

