"""The Quart subclass the app runs on: cached static routes, a session signer made once, and
requests that always finish.

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
from typing import Any

from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)
from itsdangerous import URLSafeTimedSerializer
from quart import Quart
from quart.sessions import SecureCookieSessionInterface

from .routing import StaticRouteMap

# Requests whose client left: referenced here so the loop cannot drop them half-way.
_DETACHED: set[asyncio.Task[None]] = set()


class SignedCookieSessions(SecureCookieSessionInterface):
    """Quart's signed-cookie sessions (flash messages), whose signer is built once per key.

    Quart opens the session on every request, API calls included, and builds a new signer
    each time to do it: a cost on every request for an object that only changes with the keys.
    """

    def __init__(self) -> None:
        self._signer: URLSafeTimedSerializer | None = None
        self._signer_keys: tuple[Any, ...] = ()

    def get_signing_serializer(self, app: Quart) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if self._signer is None or keys != self._signer_keys:
            self._signer = super().get_signing_serializer(app)
            self._signer_keys = keys
        return self._signer


class App(Quart):
    """Quart with :class:`StaticRouteMap`, one session signer, and requests that finish."""

    url_map_class = StaticRouteMap
    session_interface = SignedCookieSessions()

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
