"""Who is watching what: a slot for each open MJPEG stream or WebRTC session, capped per user and
(for MJPEG) in all, and the audit log's line when each starts and ends."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable

from fastapi.responses import StreamingResponse

from .audit import audit
from .auth import Caller


class TooManyStreams(RuntimeError):
    """A stream cap is reached (``server.max_streams`` or ``server.max_streams_per_user``); 503."""


class Viewing:
    """One viewer's stream of one camera: started (logged) once it plays, ended exactly once."""

    def __init__(self, viewings: "Viewings", caller: Caller, camera: str, transport: str) -> None:
        self._viewings = viewings
        self._caller = caller
        self._camera = camera
        self.transport = transport
        self._started: float | None = None
        self._ended = False

    def begin(self) -> None:
        self._started = time.monotonic()
        audit("stream_started", **self._who())

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._viewings.give_back(self)
        if self._started is not None:
            audit("stream_ended", **self._who(), duration_s=round(time.monotonic() - self._started, 1))

    @property
    def owner(self) -> str:
        return self._caller.user.name if self._caller.user.name != "anonymous" else self._caller.address

    def _who(self) -> dict[str, str]:
        return {"user": self._caller.user.name, "camera": self._camera, "transport": self.transport,
                "address": self._caller.address}


class Viewings:
    def __init__(self, max_mjpeg: int, per_user: int) -> None:
        self.max_mjpeg = max_mjpeg
        self.per_user = per_user
        self._mjpeg = 0  # changed on the event loop only
        self._by_owner: Counter[str] = Counter()

    def take(self, caller: Caller, camera: str, transport: str) -> Viewing:
        """A slot for ``caller`` to watch ``camera`` (call ``begin`` once it plays, ``end`` when done)."""
        viewing = Viewing(self, caller, camera, transport)
        if self._by_owner[viewing.owner] >= self.per_user:
            raise TooManyStreams(f"{viewing.owner} already has {self.per_user} open streams")
        if transport == "mjpeg":
            if self._mjpeg >= self.max_mjpeg:
                raise TooManyStreams(f"all {self.max_mjpeg} MJPEG streams are in use")
            self._mjpeg += 1
        self._by_owner[viewing.owner] += 1
        return viewing

    def give_back(self, viewing: Viewing) -> None:
        if viewing.transport == "mjpeg":
            self._mjpeg -= 1
        self._by_owner[viewing.owner] -= 1
        if self._by_owner[viewing.owner] <= 0:
            del self._by_owner[viewing.owner]


class HeldStream(StreamingResponse):
    """A streaming response whose viewing ends when the response does, however it ends (even when
    the client leaves before the first part, when the body's generator never starts)."""

    def __init__(self, content: Any, viewing: Viewing, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._end: Callable[[], None] = viewing.end
        viewing.begin()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._end()
