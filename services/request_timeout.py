"""BentoML's request timeout, with each request's timer cancelled once it is answered.

BentoML 1.4's ``TimeoutMiddleware`` schedules a timer per request and never
cancels it: the timer, the request's future and a copy of its context stay
alive for the whole timeout (``serving.request_timeout_s``, 30 s) after the
answer has gone. At 4,000 requests/s a worker then holds a few hundred
thousand such objects, and each collection of Python's middle generation
walked them: 65-80 ms pauses several times a second, every request in flight
waiting (the p99 of the serving benchmark). Cancelling the timer lets them
die with the request, and the same collections take under 6 ms.

Everything else is BentoML's behaviour as it is: a request not answered within
the timeout is cancelled and gets a 504; once the response has started, it runs
to its end.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.responses import JSONResponse

logger = logging.getLogger(__name__)


async def _timed_call(self: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

    async def timed_send(message: dict[str, Any]) -> None:
        if not waiter.done():
            waiter.set_result(None)
        await send(message)

    answering = asyncio.ensure_future(self.app(scope, receive, timed_send), loop=loop)
    try:
        await waiter
    except asyncio.TimeoutError:
        if answering.cancel():
            message = f"Not able to process the request in {self.timeout} seconds"
            await JSONResponse({"error": message}, status_code=504)(scope, receive, send)
    else:
        timer.cancel()  # answered: a streamed body runs to its end, as in BentoML
        await answering
    finally:
        timer.cancel()  # also when this request itself was cancelled (the client left)


def cancel_timers_of_answered_requests() -> bool:
    """Install the cancelling call on BentoML's TimeoutMiddleware (in this
    process; idempotent). Returns False, and changes nothing, where the class
    no longer looks like the one this replaces."""
    # deferred: BentoML takes seconds to import; only storing, building or serving a Bento needs it
    from bentoml._internal.server.http import traffic

    middleware = getattr(traffic, "TimeoutMiddleware", None)
    if middleware is None or not hasattr(middleware, "_set_timer_out"):
        logger.warning("BentoML's TimeoutMiddleware has changed; its request timers are left as they are")
        return False
    middleware.__call__ = _timed_call
    return True
