"""Image uploads read into memory with a byte cap, and admission: which still-image requests are
taken on at all (``Admission``, the ``RefuseWhenFull`` middleware).

Starlette's form parser spools files over 1 MiB to a temporary file on disk; an upload is a raw
photo, so it must never touch the disk. We stream the body into memory (refusing it as soon as it
passes the cap) and pull the ``file`` part out with python-multipart's streaming parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ..stills.images import FORMATS
from ..stills.workers import Overloaded, WorkerPool
from .bodies import BodyError, read_body
from .errors import error_body

IMAGE_TYPES = frozenset(FORMATS.values()) | {"image/jpg"}
# Part types a browser or curl may send for an image file whose type it does not know.
_UNTYPED = {"", "application/octet-stream"}
# Room for multipart boundaries and part headers on top of the image's own byte limit.
_MULTIPART_OVERHEAD = 64 * 1024


async def read_image(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The image bytes of a raw ``image/*`` body or of the multipart field ``file``, received within
    ``timeout_s``."""
    media, params = parse_options_header(request.headers.get("content-type", ""))
    media_type = media.decode("latin-1").lower()
    if media_type in IMAGE_TYPES:
        return await read_body(request, max_bytes, timeout_s)
    if media_type == "multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise BodyError(400, "bad_multipart", "multipart/form-data without a boundary")
        body = await read_body(request, max_bytes + _MULTIPART_OVERHEAD, timeout_s)
        return _file_part(body, boundary, max_bytes)
    shown = media_type or "none"
    raise BodyError(
        415,
        "unsupported_media_type",
        f"Content-Type {shown} is not accepted: send image/jpeg, image/png or image/webp as the body, "
        "or multipart/form-data with the image in the field 'file'",
    )


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    data: list[bytes] = field(default_factory=list)


def _file_part(body: bytes, boundary: bytes, max_bytes: int) -> bytes:
    parts: list[_Part] = []
    header = {"name": b"", "value": b""}

    def on_part_begin() -> None:
        parts.append(_Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1].headers[header["name"].decode("latin-1").lower()] = header["value"].decode("latin-1")
        header["name"] = header["value"] = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data.append(data[start:end])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise BodyError(400, "bad_multipart", f"the multipart body cannot be parsed: {exc}") from None

    for part in parts:
        _, disposition = parse_options_header(part.headers.get("content-disposition", ""))
        if disposition.get(b"name") != b"file":
            continue
        part_type = parse_options_header(part.headers.get("content-type", ""))[0].decode("latin-1").lower()
        if part_type not in IMAGE_TYPES and part_type not in _UNTYPED:
            raise BodyError(
                415, "unsupported_media_type", f"the file is {part_type}; send image/jpeg, image/png or image/webp"
            )
        data = b"".join(part.data)
        if len(data) > max_bytes:
            raise BodyError(413, "too_large", f"the image is {len(data)} bytes; the limit is {max_bytes}")
        return data
    raise BodyError(400, "missing_file", "the multipart body has no field named 'file'")


async def disconnected(request: Request) -> None:
    """Return once the client has closed the connection (for a request whose body has been read:
    the server then has nothing more to deliver but the disconnect)."""
    try:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    except Exception:  # a server that cannot tell: never claim the client has gone
        await asyncio.Event().wait()


class Admission:
    """Which still-image requests the server takes on, decided before their bodies are read.

    A request is refused when the worker pool is full (it would be refused after its upload anyway)
    or when ``max_uploads`` requests are already held: uploading, queued or being worked on. Bodies
    in memory are so bounded by ``max_uploads x image.max_bytes``, even when a burst of requests
    arrives before any has reached the pool.
    """

    def __init__(self, pool: WorkerPool, max_uploads: int) -> None:
        self.pool = pool
        self.max_uploads = max_uploads
        self.held = 0  # changed on the event loop only

    def refusal(self) -> Overloaded | None:
        """The error to answer with now, counted as a rejection; None when the request may come in."""
        if self.held >= self.max_uploads:
            return self.pool.refuse(f"{self.held} image requests are already being received or processed")
        return self.pool.refusal()

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Admit one request (raises ``Overloaded`` when it may not come in) for the ``with`` block."""
        error = self.refusal()
        if error is not None:
            raise error
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1


class RefuseWhenFull:
    """ASGI middleware: a POST to one of ``paths`` past capacity gets its 503 here, before routing,
    parameter validation or reading the body, so that a flood of requests costs as little as possible.
    The route itself checks again (``Admission.holding``)."""

    def __init__(self, app: Callable[..., Awaitable[None]], admission: Admission, paths: tuple[str, ...]) -> None:
        self.app = app
        self.admission = admission
        self.paths = frozenset(paths)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            error = self.admission.refusal()
            if error is not None:
                body = error_body("overloaded", str(error))
                await send({
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(error.retry_after).encode()),
                    ],
                })
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
