"""An ASGI middleware: a refused websocket handshake's HTTP answer goes out as one body message.

Quart sends the body of a response to a handshake it refuses (401, 403, 404) in chunks with
`more_body`, then an empty last one; granian accepts one body message only and raised
"Unsupported ASGI message" instead, so the client saw a bare 403 and the log a traceback.
"""

from __future__ import annotations

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope

from .finish import ASGIApp


class WholeRefusals:
    """Wraps an ASGI app: the body chunks of a websocket's HTTP answer are joined before sending."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def joined(message: ASGISendEvent) -> None:
            if message["type"] != "websocket.http.response.body":
                await send(message)
                return
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                body = b"".join(chunks)
                await send(
                    {"type": "websocket.http.response.body", "body": body, "more_body": False}
                )

        await self.app(scope, receive, joined)
