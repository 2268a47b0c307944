"""The service's edge, one pure ASGI middleware: API keys, the body-size
limit, one JSON log line per request, GET for the metadata endpoint, GET
/model_card, and the binary route for arrays.

One layer, not one per feature: each ASGI layer costs a call and wrapped
`receive`/`send` closures per request, and at a thousand requests a second on
two cores that is a visible share of the time.

API keys come from settings (``serving.api_keys``, or ``LOCKGATE_API_KEYS``:
comma-separated, so a new key can be added before the old one is removed).
Clients send ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. Health and metrics stay open for probes and
scrapers. Keys are compared in constant time and never logged.

The binary route, ``POST /predict_npy`` with ``Content-Type:
application/x-npy``, takes a batch as a NumPy ``.npy`` file (no pickles) and
answers the model's outputs as ``.npy`` float32, with the model's identity in
``Lockgate-*`` headers: a large batch skips JSON both ways
(``lockgate.serving.client.predict_npy`` is a client for it).

``GET /model_card`` answers the served version's model card as HTML, or as
Markdown with ``?format=markdown`` or ``Accept: text/markdown``; behind the
keys like every model route.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import time
from typing import Any, Awaitable, Callable

import numpy as np
import orjson

from lockgate.core.settings import get_settings
from lockgate.serving.model_card import ServedCard
from lockgate.serving.requests import RequestError

OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs", "/docs.json"})
NPY_ROUTE = "/predict_npy"
NPY_TYPE = "application/x-npy"
CARD_ROUTE = "/model_card"
access_log = logging.getLogger("lockgate.access")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Answers one decoded array: (outputs, response headers); raises RequestError.
BinaryHandler = Callable[[np.ndarray], Awaitable[tuple[np.ndarray, list[tuple[bytes, bytes]]]]]

_binary_handler: BinaryHandler | None = None
_card: ServedCard | None = None


def serve_binary_with(handler: BinaryHandler | None) -> None:
    """The service instance hands the edge its array handler when it starts:
    BentoML creates the middleware before the service exists."""
    global _binary_handler
    _binary_handler = handler


def serve_card(card: ServedCard | None) -> None:
    """The service hands the edge its model's card when it starts."""
    global _card
    _card = card


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


async def send_body(send: Send, status: int, body: bytes, content_type: bytes,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())] + (headers or []),
    })
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_body(send, status, orjson.dumps({"error": message}), b"application/json", headers)


class _BodyTooLarge(Exception):
    pass


class Edge:
    """Keys, body limit, request log, GET /metadata and /predict_npy in one layer."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes
        settings = get_settings()
        self.keys, self.anonymous = settings.api_key_list(), settings.serving.allow_anonymous
        self.too_large = f"request body over the limit of {max_bytes} bytes"
        if not access_log.handlers:  # BentoML configures only its own loggers
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            access_log.addHandler(handler)
            access_log.setLevel(logging.INFO)
            access_log.propagate = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, received, responded = 500, 0, False

        async def edge_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def edge_send(message: dict[str, Any]) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
            await send(message)

        try:
            await self._route(scope, edge_receive, edge_send)
        except _BodyTooLarge:
            if not responded:
                await send_error(edge_send, 413, self.too_large)
        finally:
            access_log.info(json.dumps({
                "event": "request", "method": scope.get("method"), "path": scope["path"],
                "status": status, "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "request_bytes": received,
            }))

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope.get("headers", [])
        if not self.anonymous and not key_is_valid(presented_key(headers), self.keys):
            reason = "missing or invalid API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            if not self.keys:
                reason = "no API keys are configured (set LOCKGATE_API_KEYS, or LOCKGATE_ALLOW_ANONYMOUS=true for a local demo)"
            await send_error(send, 401, reason, [(b"www-authenticate", b'Bearer realm="lockgate"')])
            return
        content_type = b""
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await send_error(send, 413, self.too_large)
                return
            if lowered == b"content-type":
                content_type = value
        path, method = scope["path"], scope.get("method")
        if path == NPY_ROUTE and method == "POST":
            await self._npy(content_type, receive, send)
            return
        if path == CARD_ROUTE and method == "GET":
            await self._model_card(scope, headers, send)
            return
        if path == "/metadata" and method == "GET":
            # BentoML exposes the metadata API as POST: ask it with an empty object.
            scope = dict(scope, method="POST")
            scope["headers"] = [h for h in headers if h[0].lower() not in (b"content-type", b"content-length")]
            scope["headers"] += [(b"content-type", b"application/json"), (b"content-length", b"2")]
            await self.app(scope, _empty_object(receive), send)
            return
        await self.app(scope, receive, send)

    async def _model_card(self, scope: Scope, headers: list[tuple[bytes, bytes]], send: Send) -> None:
        if _card is None:
            await send_error(send, 404, "this model was packaged without a model card")
            return
        accept = b",".join(value for name, value in headers if name.lower() == b"accept")
        if b"format=markdown" in scope.get("query_string", b"") or b"text/markdown" in accept:
            await send_body(send, 200, _card.markdown, b"text/markdown; charset=utf-8")
        else:
            await send_body(send, 200, _card.html, b"text/html; charset=utf-8")

    async def _npy(self, content_type: bytes, receive: Receive, send: Send) -> None:
        if content_type.split(b";")[0].strip().lower() != NPY_TYPE.encode():
            await send_error(send, 415, f"send the batch as a .npy file with 'Content-Type: {NPY_TYPE}'")
            return
        if _binary_handler is None:
            await send_error(send, 503, "the model is not loaded yet")
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            array = np.load(io.BytesIO(bytes(body)), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            await send_error(send, 400, f"the body is not a .npy array without pickled objects ({exc})")
            return
        try:
            outputs, headers = await _binary_handler(array)
        except RequestError as error:
            await send_error(send, error.status, error.message)
            return
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(outputs, dtype="float32"), allow_pickle=False)
        await send_body(send, 200, buffer.getvalue(), NPY_TYPE.encode(), headers)


def _empty_object(receive: Receive) -> Receive:
    sent = False

    async def empty_object() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": b"{}", "more_body": False}

    return empty_object
