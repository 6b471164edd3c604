"""Who is asking, and may they: logins, sessions, API keys and the camera check of every route.

A browser logs in at ``POST /api/login`` and gets a session cookie (HttpOnly, SameSite=Strict,
Secure over HTTPS); a program sends ``Authorization: Bearer`` with the token that login answers
or with an API key made by ``streamer users key``. Sessions live in memory: a restart logs
everyone out. Failed logins are limited per client address; a client's address is taken from
``X-Forwarded-For`` only when the connection comes from one of ``auth.trusted_proxies``.

Without users (``auth.users_file`` empty; the server then listens on loopback only) everyone is
an admin, as in the demo.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import time
from collections import deque
from dataclasses import dataclass

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from ..config import AuthSettings
from ..users import Role, User, Users
from .audit import audit
from .bodies import read_body

COOKIE = "streamer_session"
_LOGIN_BYTES = 4096
_MAX_SESSIONS = 10_000  # logins held at once; the oldest go first
_NOBODY = User(name="anonymous", role=Role.admin)  # everyone, on a server without users


class AuthError(Exception):
    """Not logged in (401), not allowed (403), or too many failed logins (429)."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.headers = headers


@dataclass(frozen=True)
class Caller:
    user: User
    address: str


class Login(BaseModel):
    user: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class _Sessions:
    """Login tokens (cookie or bearer) to user names, each until it expires or is logged out."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._by_token: dict[str, tuple[str, float]] = {}

    def start(self, name: str) -> str:
        now = time.monotonic()
        self._by_token = {t: s for t, s in self._by_token.items() if s[1] > now}
        while len(self._by_token) >= _MAX_SESSIONS:
            del self._by_token[next(iter(self._by_token))]
        token = secrets.token_urlsafe(32)
        self._by_token[token] = (name, now + self.ttl_s)
        return token

    def user_name(self, token: str) -> str | None:
        session = self._by_token.get(token)
        if session is None or session[1] <= time.monotonic():
            return None
        return session[0]

    def end(self, token: str) -> None:
        self._by_token.pop(token, None)


class _LoginLimiter:
    """At most ``failures`` failed logins per address in any ``window_s``."""

    def __init__(self, failures: int, window_s: float) -> None:
        self.failures = failures
        self.window_s = window_s
        self._failed: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> int | None:
        times = self._failed.get(address)
        now = time.monotonic()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            self._failed.pop(address, None)
            return None
        if len(times) < self.failures:
            return None
        return max(1, round(times[0] + self.window_s - now))

    def failed(self, address: str) -> None:
        self._failed.setdefault(address, deque()).append(time.monotonic())


class Access:
    """The server's users, their sessions and the checks that the routes depend on."""

    def __init__(self, settings: AuthSettings, users: Users | None) -> None:
        self.users = users
        self._sessions = _Sessions(settings.session_ttl_s)
        self._limiter = _LoginLimiter(settings.login_failures, settings.login_window_s)
        self._proxies = [ipaddress.ip_network(proxy, strict=False) for proxy in settings.trusted_proxies]

    # --- who is asking

    def address(self, request: Request) -> str:
        """The client's address: the connection's, or the one a trusted proxy says it forwards for."""
        peer = request.client.host if request.client else ""
        if not self._trusted(peer):
            return peer
        forwarded = [hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",") if hop.strip()]
        for hop in reversed(forwarded):  # the nearest hop that is not one of our proxies
            if not self._trusted(hop):
                return hop
        return forwarded[0] if forwarded else peer

    def https(self, request: Request) -> bool:
        peer = request.client.host if request.client else ""
        if self._trusted(peer) and "x-forwarded-proto" in request.headers:
            return request.headers["x-forwarded-proto"].split(",")[0].strip() == "https"
        return request.url.scheme == "https"

    def caller(self, request: Request) -> Caller:
        """Anyone logged in (FastAPI dependency); 401 otherwise."""
        address = self.address(request)
        if self.users is None:
            return Caller(_NOBODY, address)
        user = self._user(request)
        if user is None:
            raise AuthError(401, "unauthenticated", "log in first: POST /api/login, or send an API key",
                            {"WWW-Authenticate": 'Bearer realm="streamer"'})
        return Caller(user, address)

    def camera_caller(self, request: Request, name: str = Path(description="camera name from the configuration")) -> Caller:
        """Someone who may watch camera ``name``; 403 for a camera not granted to them."""
        caller = self.caller(request)
        if not caller.user.sees(name):
            raise AuthError(403, "forbidden", f"user {caller.user.name!r} may not watch camera {name!r}")
        return caller

    def all_cameras_caller(self, request: Request) -> Caller:
        """Someone who may watch every camera (what ``/metrics`` names)."""
        caller = self.caller(request)
        if not caller.user.sees_every_camera:
            raise AuthError(403, "forbidden", "this needs access to every camera")
        return caller

    def _user(self, request: Request) -> User | None:
        assert self.users is not None
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credential:
            credential = credential.strip()
            user = self.users.by_api_key(credential)
            if user is not None:
                return user
            return self._session_user(credential)
        token = request.cookies.get(COOKIE)
        return self._session_user(token) if token else None

    def _session_user(self, token: str) -> User | None:
        name = self._sessions.user_name(token)
        return self.users.get(name) if name is not None and self.users is not None else None

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._proxies)

    # --- logging in and out

    def routes(self, body_timeout_s: float) -> APIRouter:
        router = APIRouter()

        @router.post(
            "/api/login",
            summary="Log in: a session cookie for the browser and a bearer token for programs",
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": Login.model_json_schema()}}}},
            responses={401: {}, 429: {}},
        )
        async def login(request: Request) -> Response:
            address = self.address(request)
            if self.users is None:
                raise AuthError(400, "no_users", "this server has no users: everyone may watch (loopback only)")
            wait = self._limiter.retry_after(address)
            if wait is not None:
                raise AuthError(429, "too_many_logins", f"too many failed logins; try again in {wait} s",
                                {"Retry-After": str(wait)})
            try:
                given = Login.model_validate_json(await read_body(request, _LOGIN_BYTES, body_timeout_s))
            except ValidationError as exc:
                raise AuthError(422, "invalid_parameter", f'expected JSON {{"user": ..., "password": ...}}: {exc.errors()[0]["msg"]}') from None
            user = await asyncio.to_thread(self.users.login, given.user, given.password)
            if user is None:
                self._limiter.failed(address)
                audit("login_failed", user=given.user, address=address)
                raise AuthError(401, "bad_login", "wrong user name or password")
            token = self._sessions.start(user.name)
            audit("login", user=user.name, role=user.role.value, address=address)
            ttl = int(self._sessions.ttl_s)
            reply = JSONResponse({"user": user.name, "role": user.role.value, "token": token, "expires_in": ttl})
            reply.set_cookie(
                COOKIE, token, max_age=ttl, httponly=True, samesite="strict", secure=self.https(request), path="/"
            )
            return reply

        @router.post("/api/logout", summary="Log out: the session's cookie and token stop working", status_code=204)
        async def logout(request: Request) -> Response:
            token = request.cookies.get(COOKIE) or request.headers.get("authorization", "").partition(" ")[2].strip()
            if token and self.users is not None:
                name = self._sessions.user_name(token)
                self._sessions.end(token)
                if name is not None:
                    audit("logout", user=name, address=self.address(request))
            reply = Response(status_code=204)
            reply.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
            return reply

        @router.get("/api/me", summary="Who is logged in, with which role and cameras")
        async def me(request: Request) -> dict:
            caller = self.caller(request)
            user = caller.user
            return {"user": user.name, "role": user.role.value, "cameras": list(user.cameras),
                    "every_camera": user.sees_every_camera, "users": self.users is not None}

        return router

