"""An ASGI middleware: every HTTP request runs to its end, whether or not its client stays.

When a client disconnects, Quart (on the ASGI `http.disconnect` message) and hypercorn (when it
tears the connection down) cancel its request; granian only sends the message. Cancelled inside a database call,
SQLAlchemy gives up the aiosqlite connection without closing it, and the SQLite write lock its
transaction holds stays taken until the garbage collector finds the connection (an idle worker
kept the lock for minutes after a load test stopped mid-refresh, and every write elsewhere
failed). Each HTTP request therefore runs to its end in a task of its own, whatever its client
does: Quart never sees the disconnect message, and hypercorn's cancellation stops at a shield. A
departed client's request answers nobody, but its transaction commits or rolls back. A request
still waiting for its body ends at Quart's BODY_TIMEOUT.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# Quart types its ASGI callables with hypercorn's definitions (any ASGI server works).
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]

# Requests whose client left: referenced here so the loop cannot drop them half-way.
_DETACHED: set[asyncio.Future[None]] = set()


class FinishRequests:
    """Wraps an ASGI app so that a departed client never cuts its request short."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client_left = False

        async def receive_but_disconnects() -> ASGIReceiveEvent:
            message = await receive()
            if message["type"] == "http.disconnect":
                # Quart cancels this waiting receiver once the request has finished.
                await asyncio.get_running_loop().create_future()
            return message

        async def send_to_client(message: ASGISendEvent) -> None:
            if not client_left:
                await send(message)

        request = asyncio.ensure_future(self.app(scope, receive_but_disconnects, send_to_client))
        try:
            await asyncio.shield(request)
        except asyncio.CancelledError:
            client_left = True
            if not request.done():
                _DETACHED.add(request)
                request.add_done_callback(_DETACHED.discard)
            raise
