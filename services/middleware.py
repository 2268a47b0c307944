"""ASGI middleware at the service's edge: API keys, a body-size limit,
structured request logs, and GET for the metadata endpoint.

API keys:
Keys come from ``LOCKGATE_API_KEYS`` (comma-separated, so a new key can be
added before the old one is removed). Clients send ``Authorization: Bearer
KEY`` or ``X-API-Key: KEY``. Health and metrics stay open for probes and
scrapers. Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
from typing import Any, Awaitable, Callable

OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs", "/docs.json"})
access_log = logging.getLogger("lockgate.access")

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
        await send_error(send, 401, reason, [(b"www-authenticate", b'Bearer realm="lockgate"')])


async def send_error(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for a body over the limit, declared or streamed, before it is parsed."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body over the limit of {self.max_bytes} bytes"
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await send_error(send, 413, too_large)
                return
        seen = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await send_error(send, 413, too_large)


class RequestLogMiddleware:
    """One JSON line per request: method, path, status, duration, sizes. No payloads, no headers."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        if not access_log.handlers:  # BentoML configures only its own loggers
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            access_log.addHandler(handler)
            access_log.setLevel(logging.INFO)
            access_log.propagate = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        started, status, received = time.perf_counter(), 500, 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def status_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, counting_receive, status_send)
        finally:
            access_log.info(json.dumps({
                "event": "request", "method": scope.get("method"), "path": scope.get("path"),
                "status": status, "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "request_bytes": received,
            }))


class MetadataGetMiddleware:
    """Lets `GET /metadata` reach the metadata API, which BentoML exposes as POST."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET" and scope.get("path") == "/metadata":
            scope = dict(scope, method="POST")
            scope["headers"] = [h for h in scope.get("headers", []) if h[0].lower() not in (b"content-type", b"content-length")]
            scope["headers"] += [(b"content-type", b"application/json"), (b"content-length", b"2")]
            sent = False

            async def empty_object() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": b"{}", "more_body": False}

            await self.app(scope, empty_object, send)
            return
        await self.app(scope, receive, send)
