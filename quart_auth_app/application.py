"""The Quart subclass the app runs on: cached static routes, and requests that always finish.

When a client disconnects, Quart (on the ASGI `http.disconnect` message) and hypercorn (when it
tears the connection down) cancel its request. Cancelled inside a database call,
SQLAlchemy gives up the aiosqlite connection without closing it, and the SQLite write lock its
transaction holds stays taken until the garbage collector finds the connection (bench/: after
wrk stopped mid-refresh, an idle worker kept the lock for minutes and every write elsewhere
failed). Each HTTP request therefore runs to its end in a task of its own, whatever its client
does: Quart never sees the disconnect message, and hypercorn's cancellation stops at a shield. A
departed client's request answers nobody, but its transaction commits or rolls back. A request
still waiting for its body ends at Quart's BODY_TIMEOUT.
"""

from __future__ import annotations

import asyncio

from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)
from quart import Quart

from .routing import StaticRouteMap

# Requests whose client left: referenced here so the loop cannot drop them half-way.
_DETACHED: set[asyncio.Task[None]] = set()


class App(Quart):
    """Quart with :class:`StaticRouteMap` and requests that finish despite disconnects."""

    url_map_class = StaticRouteMap

    async def asgi_app(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await super().asgi_app(scope, receive, send)
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

        request = asyncio.ensure_future(
            super().asgi_app(scope, receive_but_disconnects, send_to_client)
        )
        try:
            await asyncio.shield(request)
        except asyncio.CancelledError:
            client_left = True
            if not request.done():
                _DETACHED.add(request)
                request.add_done_callback(_DETACHED.discard)
            raise
