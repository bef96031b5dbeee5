"""API-key authentication (Spice's ``runtime.auth.api-key``) for Flight SQL and HTTP.

Flight clients send ``authorization: Bearer <key>`` on every call, or authenticate once with
HTTP Basic credentials through the Flight Handshake (any username, the key as the password) and
get ``authorization: Bearer <key>`` back to use from then on. HTTP clients send ``X-API-Key:
<key>`` (or ``Authorization: Bearer <key>``, which Prometheus scrape configurations can send).
Keys are compared in constant time; nothing is stored per client.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

import pyarrow.flight as flight

log = logging.getLogger(__name__)

API_KEY_HEADER = "x-api-key"
AUTHORIZATION = "authorization"
_UNAUTHENTICATED = (
    "missing or invalid API key: send 'authorization: Bearer <key>', or a username and the key "
    "as the password"
)


class Headers(Protocol):
    """Request headers: a plain mapping, or http.server's case-insensitive message."""

    def get(self, name: str, /) -> str | None: ...

    def items(self) -> Iterable[tuple[str, str]]: ...


class ApiKeys:
    """The accepted API keys (at least one)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one API key is needed")
        self._keys = tuple(key.encode() for key in keys)

    def valid(self, presented: str | None) -> bool:
        """Whether ``presented`` is one of the keys (every key is compared: no timing hint)."""
        if not presented:
            return False
        candidate = presented.encode()
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(candidate, key)
        return found

    def http_allowed(self, headers: Headers) -> bool:
        """Whether an HTTP request carries a valid key (``X-API-Key`` or a Bearer token)."""
        if self.valid(_header(headers, API_KEY_HEADER)):
            return True
        scheme, _, credentials = (_header(headers, AUTHORIZATION) or "").partition(" ")
        return scheme.lower() == "bearer" and self.valid(credentials.strip())


def _header(headers: Headers, name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # http.server's headers match case-insensitively, plain dicts do not
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def basic_password(credentials: str) -> str | None:
    """The password of HTTP Basic ``credentials`` (base64 of ``user:password``), or None.

    The Go Flight client (under ADBC) sends base64 without padding, so padding is optional.
    """
    text = credentials.strip()
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None


class ApiKeyMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Refuses (UNAUTHENTICATED) every Flight call without a valid key, before it runs."""

    def __init__(self, keys: ApiKeys) -> None:
        super().__init__()
        self._keys = keys

    def start_call(
        self, info: flight.CallInfo, headers: dict[str, list[str]]
    ) -> flight.ServerMiddleware | None:
        for value in headers.get(AUTHORIZATION, []):
            scheme, _, credentials = value.partition(" ")
            scheme = scheme.lower()
            if scheme == "bearer" and self._keys.valid(credentials.strip()):
                return None
            if scheme == "basic":
                password = basic_password(credentials)
                if self._keys.valid(password):
                    assert password is not None
                    return _IssueBearer(password)  # the key itself is the bearer token
        log.info("Flight %s refused: no valid API key", info.method.name)
        raise flight.FlightUnauthenticatedError(_UNAUTHENTICATED)


class _IssueBearer(flight.ServerMiddleware):
    """Answers a Basic-authenticated call (the Handshake) with the token to send from now on."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self._key = key

    def sending_headers(self) -> dict[str, str]:
        return {AUTHORIZATION: f"Bearer {self._key}"}


class HandshakeHandler(flight.ServerAuthHandler):
    """Lets the Flight Handshake succeed; the credentials were checked by the middleware.

    pyarrow answers Handshake with UNIMPLEMENTED unless a server has an auth handler, and
    clients given a username and password (ADBC, flightsql-dbapi) start with a Handshake.
    """

    def authenticate(
        self, outgoing: flight.ServerAuthSender, incoming: flight.ServerAuthReader
    ) -> None:
        return None

    def is_valid(self, token: bytes) -> str:
        return ""  # calls carry the key in their headers, checked by ApiKeyMiddlewareFactory
