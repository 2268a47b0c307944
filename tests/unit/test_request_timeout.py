"""BentoML's request timeout with the timers of answered requests cancelled
(services/request_timeout.py), on BentoML's own middleware class."""

from __future__ import annotations

import asyncio
import gc
import importlib.util

import pytest
from bentoml._internal.server.http.traffic import TimeoutMiddleware

from services.request_timeout import cancel_timers_of_answered_requests


@pytest.fixture
def timed(monkeypatch):
    """BentoML's middleware with the cancelling call, restored afterwards."""
    monkeypatch.setattr(TimeoutMiddleware, "__call__", TimeoutMiddleware.__call__)
    assert cancel_timers_of_answered_requests()
    return TimeoutMiddleware


def make_app(delay: float = 0.0, chunks: int = 1):
    async def app(scope, receive, send):
        await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(chunks):
            await asyncio.sleep(delay if i else 0)
            await send({"type": "http.response.body", "body": b"x", "more_body": i < chunks - 1})

    return app


def call(middleware, requests: int = 1) -> tuple[list[dict], int]:
    """Send `requests` requests through `middleware`; return what was sent
    and how many more timers are pending (not cancelled) once all are answered."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    def timers() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.TimerHandle) and not o.cancelled())

    async def main():
        before = timers()
        await asyncio.gather(*(middleware({"type": "http", "path": "/predict"}, receive, send) for _ in range(requests)))
        return timers() - before

    return sent, asyncio.run(main())


def shipped_middleware() -> type:
    """BentoML's class as shipped, from a fresh copy of its module: in this
    process a service may already have installed the cancelling call on the
    imported one."""
    spec = importlib.util.find_spec(TimeoutMiddleware.__module__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TimeoutMiddleware


def test_bentoml_s_own_middleware_keeps_every_answered_request_s_timer():
    """Why the replacement exists: if this fails, BentoML has fixed it."""
    _, scheduled = call(shipped_middleware()(make_app(), timeout=30), requests=50)
    assert scheduled >= 50


def test_an_answered_request_leaves_no_timer_scheduled(timed):
    sent, scheduled = call(timed(make_app(), timeout=30), requests=50)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200] * 50
    assert scheduled == 0


def test_a_request_over_the_timeout_is_cancelled_with_a_504(timed):
    sent, _ = call(timed(make_app(delay=0.5), timeout=0.05))
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [504]
    assert b"0.05 seconds" in sent[-1]["body"]


def test_a_started_response_runs_to_its_end_past_the_timeout(timed):
    sent, _ = call(timed(make_app(delay=0.03, chunks=4), timeout=0.05))
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200]
    assert [m["body"] for m in sent if m["type"] == "http.response.body"] == [b"x"] * 4


def test_lifespan_messages_pass_through(timed):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(timed(app, timeout=30)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]
