"""The RTSP output's door: the same users, camera grants, stream caps, failed-login limit and audit
log as HTTP. RTSP clients (NVRs, VLC, ffmpeg) log in with Basic auth: a user's name and password,
or any name and one of the user's API keys as the password."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time

from ..live.cameras import Cameras
from ..outputs.encoders import Encoders
from ..outputs.rtsp import RtspRefusal, RtspServer
from ..users import User, api_key_digest
from .audit import audit
from .auth import Access, AuthError, Caller
from .viewings import TooManyStreams, Viewing, Viewings

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="streamer"'}
_REMEMBER_S = 60  # a checked Authorization header is believed this long (scrypt costs ~60 ms a check)


class RtspGate:
    def __init__(self, access: Access, viewings: Viewings) -> None:
        self._access = access
        self._viewings = viewings
        # digest of an Authorization header -> (user, its password hash or key digest, until)
        self._checked: dict[str, tuple[str, str, float]] = {}

    async def check(self, authorization: str | None, camera: str, address: str) -> Caller:
        users = self._access.users
        if users is None:
            return self._access.nobody(address)
        user = await self._user(authorization, address)
        if not user.sees(camera):
            raise RtspRefusal(403, f"user {user.name!r} may not watch camera {camera!r}")
        return Caller(user, address)

    def watch(self, caller: Caller, camera: str) -> Viewing:
        try:
            return self._viewings.take(caller, camera, "rtsp")
        except TooManyStreams as exc:
            raise RtspRefusal(503, str(exc)) from None

    async def _user(self, authorization: str | None, address: str) -> User:
        users = self._access.users
        assert users is not None
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise RtspRefusal(401, "log in", _CHALLENGE)
        digest = hashlib.sha256(encoded.encode()).hexdigest()
        remembered = self._checked.get(digest)
        if remembered is not None and remembered[2] > time.monotonic():
            user = users.get(remembered[0])
            if user is not None and _credential(user, remembered[1]):
                return user  # the same password or key, still the user's
        try:
            name, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            raise RtspRefusal(401, "unreadable credentials", _CHALLENGE) from None
        try:
            self._access.may_try_login(address)
        except AuthError as exc:
            raise RtspRefusal(exc.status, str(exc), exc.headers) from None
        key = users.by_api_key(password)
        user = key or await asyncio.to_thread(users.login, name, password)
        if user is None:
            self._access.login_failed(name, address)
            raise RtspRefusal(401, "wrong user name or password", _CHALLENGE)
        self._access.login_succeeded(address)
        if remembered is None:
            audit("login", user=user.name, role=user.role.value, address=address, via="rtsp")
        now = time.monotonic()
        self._checked = {d: kept for d, kept in self._checked.items() if kept[2] > now}
        proof = api_key_digest(password) if key is not None else user.password
        self._checked[digest] = (user.name, proof, now + _REMEMBER_S)
        return user


def _credential(user: User, proof: str) -> bool:
    """Whether the password hash or key digest remembered for a header is still ``user``'s."""
    return proof == user.password or proof in user.api_keys


def rtsp_server(cameras: Cameras, encoders: Encoders, access: Access, viewings: Viewings, host: str, port: int) -> RtspServer:
    return RtspServer(lambda name: cameras.get(name).hub, encoders, RtspGate(access, viewings), host, port)
