"""The access-log line under granian (SPEC §8), written by the app at a fraction of its cost.

Granian builds its line with a dict of every atom and a formatted time whether or not the
format uses them, through an extra coroutine per request. `serve` turns granian's line off and
serves the app wrapped in AccessLine instead: the line granian's format
`%(addr)s "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).1fms` gives (no query string:
a mail link's token travels there), to the same logger, `granian.access`, so its handler and
any logging configuration of it apply unchanged.
"""

from __future__ import annotations

import logging
import time

from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
    Scope,
    WebsocketScope,
)

from .finish import ASGIApp

ACCESS_LOGGER = "granian.access"
LINE = '%s "%s %s HTTP/%s" %d %.1fms'
# What a socket's handshake was answered with, by the first message that decides it.
HANDSHAKE_STATUS = {"websocket.accept": 101, "websocket.close": 403}


class AccessLine:
    """Wraps an ASGI app: one line per HTTP request (once answered) and websocket handshake."""

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.log = logger or logging.getLogger(ACCESS_LOGGER)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        request: HTTPScope | WebsocketScope = scope
        started = time.perf_counter()
        status = 0

        async def sending(message: ASGISendEvent) -> None:
            nonlocal status
            if not status:
                kind = message["type"]
                if kind in ("http.response.start", "websocket.http.response.start"):
                    status = message["status"]  # type: ignore[typeddict-item]
                elif kind in HANDSHAKE_STATUS:
                    status = HANDSHAKE_STATUS[kind]
                if status and request["type"] == "websocket":  # logged when answered, as granian
                    self._line(request, status, started)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # An HTTP line once the response is complete; a request that sent nothing was
            # answered 500 by the server.
            if request["type"] == "http" or not status:
                self._line(request, status or 500, started)

    def _line(self, scope: HTTPScope | WebsocketScope, status: int, started: float) -> None:
        client = scope.get("client")
        method = scope.get("method", "GET")  # a websocket handshake is a GET
        self.log.info(
            LINE,
            client[0] if client else "-",
            method,
            scope["path"],
            scope.get("http_version", "1.1"),
            status,
            (time.perf_counter() - started) * 1000,
        )
