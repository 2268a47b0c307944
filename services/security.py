"""API-key authentication for the service, as plain ASGI middleware.

Keys come from ``LOCKGATE_API_KEYS`` (comma-separated, so a new key can be
added before the old one is removed). Clients send ``Authorization: Bearer
KEY`` or ``X-API-Key: KEY``. Health and metrics stay open for probes and
scrapers. Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any, Awaitable, Callable

OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def configured_keys() -> list[str]:
    raw = os.environ.get("LOCKGATE_API_KEYS")
    if raw is None:
        from lockgate.settings import get_settings

        raw = get_settings().serving.api_keys.get_secret_value()
    return [k.strip() for k in raw.split(",") if k.strip()]


def anonymous_allowed() -> bool:
    raw = os.environ.get("LOCKGATE_ALLOW_ANONYMOUS")
    if raw is not None:
        return raw.strip().lower() in {"1", "true", "yes"}
    from lockgate.settings import get_settings

    return get_settings().serving.allow_anonymous


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"x-api-key":
            return value.decode("latin-1").strip()
        if lowered == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def key_is_valid(candidate: str | None, keys: list[str]) -> bool:
    if not candidate:
        return False
    matched = False
    for key in keys:  # check every key, so timing does not tell which matched
        matched |= hmac.compare_digest(candidate.encode(), key.encode())
    return matched


class ApiKeyMiddleware:
    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.keys = configured_keys()
        self.anonymous = anonymous_allowed()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.anonymous or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if key_is_valid(presented_key(scope.get("headers", [])), self.keys):
            await self.app(scope, receive, send)
            return
        reason = "missing or invalid API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
        if not self.keys:
            reason = "no API keys are configured (set LOCKGATE_API_KEYS, or LOCKGATE_ALLOW_ANONYMOUS=true for a local demo)"
        body = json.dumps({"error": reason}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="lockgate"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
