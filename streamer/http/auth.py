"""Who is asking, and may they: logins, sessions, API keys and the camera check of every route.

A browser logs in at ``POST /api/login`` and gets a session cookie (HttpOnly, SameSite=Strict,
Secure over HTTPS); a program sends ``Authorization: Bearer`` with the token that login answers
or with an API key made by ``streamer users key``. Tokens are signed with the users file's
session key, so every server that reads the file accepts them (behind a load balancer too). Failed logins are limited per client address; a client's address is taken from
``X-Forwarded-For`` only when the connection comes from one of ``auth.trusted_proxies``.

Without users (``auth.users_file`` empty; the server then listens on loopback only) everyone is
an admin, as in the demo.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
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
_TOKEN_PREFIX = "s1."
_MAX_REVOKED = 100_000  # logged-out tokens remembered until they expire
_MAX_ADDRESSES = 10_000  # addresses with recent failed logins kept before old ones are forgotten
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


class _Tokens:
    """Login tokens that every server reading the same users file accepts, with no shared store:
    the user's name, the expiry and a fingerprint of the user's password hash, signed (HMAC-SHA256)
    with the file's session key. Changing a user's password ends their logins everywhere; logging
    out ends a token on the server that was told (others accept it until it expires)."""

    def __init__(self, users: Users, ttl_s: float) -> None:
        self._users = users
        self.ttl_s = ttl_s
        self._revoked: dict[str, float] = {}  # token -> its expiry

    def issue(self, user: User) -> str:
        claims = {"u": user.name, "e": int(time.time() + self.ttl_s), "p": _fingerprint(user), "n": secrets.token_hex(8)}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{_TOKEN_PREFIX}{payload}.{self._sign(payload)}"

    def user(self, token: str) -> User | None:
        if not token.isascii() or not token.startswith(_TOKEN_PREFIX) or token in self._revoked:
            return None
        payload, _, signature = token[len(_TOKEN_PREFIX):].partition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            claims = json.loads(_unb64(payload))
        except ValueError:
            return None
        user = self._users.get(claims.get("u", ""))
        if user is None or claims.get("e", 0) <= time.time() or claims.get("p") != _fingerprint(user):
            return None
        return user

    def revoke(self, token: str) -> None:
        now = time.time()
        self._revoked = {t: e for t, e in self._revoked.items() if e > now}
        if len(self._revoked) < _MAX_REVOKED:
            self._revoked[token] = now + self.ttl_s

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._users.session_key, payload.encode(), hashlib.sha256).digest())


def _fingerprint(user: User) -> str:
    return hashlib.sha256(user.password.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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

    def attempt(self, address: str) -> None:
        """Count a login attempt as failed before it is checked (parallel guesses count at once);
        ``succeeded`` takes it back. Addresses whose attempts are all old are forgotten."""
        now = time.monotonic()
        if len(self._failed) > _MAX_ADDRESSES:
            self._failed = {a: t for a, t in self._failed.items() if t and t[-1] > now - self.window_s}
        self._failed.setdefault(address, deque()).append(now)

    def succeeded(self, address: str) -> None:
        times = self._failed.get(address)
        if times:
            times.pop()


class Access:
    """The server's users, their sessions and the checks that the routes depend on."""

    def __init__(self, settings: AuthSettings, users: Users | None) -> None:
        self.users = users
        self._tokens = _Tokens(users, settings.session_ttl_s) if users is not None else None
        self._ttl_s = settings.session_ttl_s
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

    def nobody(self, address: str) -> Caller:
        """The caller on a server without users: everyone, as an admin."""
        return Caller(_NOBODY, address)

    def may_try_login(self, address: str) -> None:
        """Raises 429 while ``address`` has too many failed logins; else counts this attempt as one
        until ``login_succeeded`` says otherwise (so guesses sent at once are counted at once)."""
        wait = self._limiter.retry_after(address)
        if wait is not None:
            raise AuthError(429, "too_many_logins", f"too many failed logins; try again in {wait} s",
                            {"Retry-After": str(wait)})
        self._limiter.attempt(address)

    def login_succeeded(self, address: str) -> None:
        self._limiter.succeeded(address)

    def login_failed(self, name: str, address: str) -> None:
        audit("login_failed", user=name, address=address)

    def caller(self, request: Request) -> Caller:
        """Anyone logged in (FastAPI dependency); 401 otherwise."""
        address = self.address(request)
        if self.users is None:
            return self.nobody(address)
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

    def camera_admin(self, request: Request, name: str = Path(description="camera name from the configuration")) -> Caller:
        """An admin (changes to a camera, such as its privacy zones); 403 for anyone else."""
        caller = self.camera_caller(request, name)
        if caller.user.role is not Role.admin:
            raise AuthError(403, "forbidden", f"only an admin may change camera {name!r}")
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
            return self.users.by_api_key(credential) or self._token_user(credential)
        token = request.cookies.get(COOKIE)
        return self._token_user(token) if token else None

    def _token_user(self, token: str) -> User | None:
        return self._tokens.user(token) if self._tokens is not None else None

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
            self.may_try_login(address)
            try:
                given = Login.model_validate_json(await read_body(request, _LOGIN_BYTES, body_timeout_s))
            except ValidationError as exc:
                raise AuthError(422, "invalid_parameter", f'expected JSON {{"user": ..., "password": ...}}: {exc.errors()[0]["msg"]}') from None
            user = await asyncio.to_thread(self.users.login, given.user, given.password)
            if user is None:
                self.login_failed(given.user, address)
                raise AuthError(401, "bad_login", "wrong user name or password")
            assert self._tokens is not None
            self.login_succeeded(address)
            token = self._tokens.issue(user)
            audit("login", user=user.name, role=user.role.value, address=address)
            ttl = int(self._ttl_s)
            reply = JSONResponse({"user": user.name, "role": user.role.value, "token": token, "expires_in": ttl})
            reply.set_cookie(
                COOKIE, token, max_age=ttl, httponly=True, samesite="strict", secure=self.https(request), path="/"
            )
            return reply

        @router.post("/api/logout", summary="Log out: the session's cookie and token stop working", status_code=204)
        async def logout(request: Request) -> Response:
            token = request.cookies.get(COOKIE) or request.headers.get("authorization", "").partition(" ")[2].strip()
            user = self._token_user(token) if token else None
            if user is not None and self._tokens is not None:
                self._tokens.revoke(token)
                audit("logout", user=user.name, address=self.address(request))
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

