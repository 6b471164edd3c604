"""Who may use the service: users with a role and the cameras they may watch, kept in a YAML file
(``auth.users_file``) that holds only hashes of their passwords and API keys.

Passwords are hashed with scrypt (memory-hard; Python's ``hashlib``, from OpenSSL) and a random
salt each. API keys are long random strings, so a SHA-256 of each is enough to keep them. The file
is written by ``streamer users ...`` and read again by a running server when it changes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import os
import secrets
import threading
from enum import Enum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import ConfigError, read_mapping

log = logging.getLogger("streamer.auth")

# scrypt's cost: 2^14 x 8 x 128 bytes = 16 MiB and ~50 ms a check, OWASP's floor for scrypt.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_API_KEY_PREFIX = "sk_"
EVERY_CAMERA = "*"


class Role(str, Enum):
    admin = "admin"  # every camera, and changes (users, zones)
    viewer = "viewer"  # the cameras in its list


class User(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    role: Role = Role.viewer
    cameras: tuple[str, ...] = Field((), description='camera names this user may watch; "*" = every camera')
    password: str = Field("", description="scrypt hash; empty = no password login (API keys only)")
    api_keys: tuple[str, ...] = Field((), description="SHA-256 of each API key, hex")

    def sees(self, camera: str) -> bool:
        return self.role is Role.admin or EVERY_CAMERA in self.cameras or camera in self.cameras

    @property
    def sees_every_camera(self) -> bool:
        return self.role is Role.admin or EVERY_CAMERA in self.cameras


class UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    users: tuple[User, ...] = ()
    session_key: str = Field(
        "", description="base64 key that signs login tokens, so that every server reading this file accepts them"
    )


class UsersError(ConfigError):
    """The users file cannot be read or is invalid; the message names the file and the key."""


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=64 << 20)
    return "$".join(["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)])


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        given = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), maxmem=64 << 20
        )
    except ValueError:
        return False
    return hmac.compare_digest(given, _unb64(digest))


@functools.cache
def _decoy() -> str:
    """A hash to check for unknown users, so that timing does not tell which names exist."""
    return hash_password(secrets.token_urlsafe(16))


def new_api_key() -> tuple[str, str]:
    """A new API key and what the users file keeps of it."""
    key = _API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, api_key_digest(key)


def api_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_users(path: Path) -> UsersFile:
    data = read_mapping(path, "users file")
    try:
        content = UsersFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsersError(f"users file {path}: {problems}") from None
    names = [user.name for user in content.users]
    if len(set(names)) != len(names):
        raise UsersError(f"users file {path}: a user name appears twice")
    return content


def write_users(path: Path, content: UsersFile) -> None:
    """Replace the file at once (never half-written), readable by its owner only; a file without
    a session key gets one."""
    data = {
        "session_key": content.session_key or _b64(os.urandom(32)),
        "users": [user.model_dump(mode="json", exclude_defaults=True) for user in content.users],
    }
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(data, out, sort_keys=False)
    os.replace(temporary, path)


class Users:
    """The users of a running server, read again from their file when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_name: dict[str, User] = {}
        self._by_key: dict[str, User] = {}
        self._session_key = b""
        self._refresh()

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def get(self, name: str) -> User | None:
        self._refresh()
        return self._by_name.get(name)

    def login(self, name: str, password: str) -> User | None:
        """The user whose name and password these are, else None (in about the same time either way)."""
        user = self.get(name)
        stored = user.password if user is not None and user.password else _decoy()
        matches = password_matches(password, stored)
        return user if matches and user is not None and user.password else None

    @property
    def session_key(self) -> bytes:
        """The key that signs login tokens (the file's; without one, this process's own)."""
        self._refresh()
        return self._session_key

    def by_api_key(self, key: str) -> User | None:
        if not key.startswith(_API_KEY_PREFIX):
            return None
        self._refresh()
        return self._by_key.get(api_key_digest(key))

    def _refresh(self) -> None:
        """Read the file again if it changed (a bad new version keeps the old users, and says why)."""
        try:
            status = self.path.stat()
        except OSError as exc:
            if self._stamp is None:
                raise UsersError(f"cannot read users file {self.path}: {exc.strerror}") from None
            return
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                content = read_users(self.path)
                session_key = _unb64(content.session_key) if content.session_key else b""
            except (ConfigError, ValueError) as exc:
                # the first line only: YAML errors go on to quote the file (hashes, the session key)
                problem = str(exc).splitlines()[0]
                if self._stamp is None:
                    raise UsersError(f"users file {self.path}: {problem}") from None
                log.error("users file %s cannot be used (%s); keeping the users read before", self.path, problem)
                self._stamp = stamp
                return
            self._by_name = {user.name: user for user in content.users}
            self._by_key = {key: user for user in content.users for key in user.api_keys}
            if session_key:
                self._session_key = session_key
            elif not self._session_key:
                log.warning(
                    "users file %s has no session_key: logins work on this process only (any `streamer users` "
                    "command adds one)", self.path,
                )
                self._session_key = os.urandom(32)
            self._stamp = stamp


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)
