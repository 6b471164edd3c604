"""Request bodies read into memory with a byte cap and a deadline, before any other work.

A body is refused as soon as it is known to pass its cap (from ``Content-Length``, else while it
streams in), and a client that sends it too slowly (``server.body_timeout_s``) gets 408: a
trickled upload cannot hold a slot that other requests need.
"""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request


class BodyError(ValueError):
    """A body we will not read; ``status`` and ``code`` describe why for the HTTP answer."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, at most ``limit`` bytes, received within ``timeout_s`` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, "too_large", f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyError(413, "too_large", f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyError(408, "request_timeout", f"the body did not arrive within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise BodyError(400, "client_disconnected", "the client closed the connection mid-upload") from None
    return b"".join(chunks)
