"""Hiding secrets in any text that may quote a camera source: logs, errors and the API.

A source URL can carry a password (``rtsp://user:password@host/...``, a password that may itself
hold ``@``) or a token in its query (``?token=...``, ``&password=...``). Every string that can hold
a source goes through ``redact`` before it is logged or shown.
"""

from __future__ import annotations

import re

# scheme://user:password@ - everything before the host goes: a password, a user name (which may
# itself hold "@", or be a token), up to the last "@" of the word (a path with "@" in it loses
# more than it needs to, never less).
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)\S*@")
# ?token=..., &password=..., &api_key=...: a query parameter whose name says it is a secret.
_SECRET_PARAMETER = re.compile(
    r"([?&;][\w.-]*(?:pass|pwd|token|secret|key|auth|sig|credential|session)[\w.-]*=)[^&;#\s]*", re.IGNORECASE
)


def redact(text: str) -> str:
    """``text`` with the user and password and the secret query parameters of every URL in it replaced."""
    return _SECRET_PARAMETER.sub(r"\1***", _USERINFO.sub(r"\1***@", text))
