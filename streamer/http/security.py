"""What the browser is told, and which requests are taken at all: allowed Host names, CORS, and
security headers on every answer.

On loopback without a list of hosts, only localhost names are accepted, so that a web page
elsewhere cannot reach the server through DNS rebinding. Cross-origin calls are refused unless
``server.cors_origins`` lists the origin. The UI's pages may load nothing from anywhere else.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Awaitable, Callable

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..config import ServerSettings

LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")

# The web UI: scripts, styles and media from this server only; frames as blob: URLs.
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; script-src 'self'; "
    "style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# Swagger UI's page (/docs) starts itself with an inline script.
_DOCS_CSP = _CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'").replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the server to this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def secure(app: FastAPI, settings: ServerSettings) -> None:
    """Add the Host check, CORS (when origins are listed) and the security headers to ``app``."""
    hosts = list(settings.allowed_hosts) or (list(LOCAL_HOSTS) if is_loopback(settings.host) else ["*"])
    app.add_middleware(_SecurityHeaders, https=bool(settings.tls_cert))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"], allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Location", "X-Faces-Detected", "Retry-After"],
        )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)


class _SecurityHeaders:
    """ASGI middleware (it leaves streaming bodies alone) that adds the headers to every answer."""

    def __init__(self, app: Callable[..., Awaitable[None]], https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = _DOCS_CSP if scope["path"] == "/docs" else _CSP
        extra = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"content-security-policy", csp.encode()),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if self.https:
            extra.append((b"strict-transport-security", b"max-age=31536000"))

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
