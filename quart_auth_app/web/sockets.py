"""Authenticated websockets (SPEC §12): the handshake, the messages a view reads, and the close.

A socket is refused before it is accepted when its handshake carries a bad token (401) or comes
from another site (403, security.py). Without a token it is accepted and must send
`{"type": "auth", "token": ...}` within AUTH_SECONDS. Once authenticated, the socket is watched
(live_sockets.SocketWatch) and closed with 4401 when its session ends or its token expires; a
later auth message renews the token. Messages are read here, not by the view: auth messages
are handled, oversized, binary, malformed and too frequent ones close the socket with the code
RFC 6455 §7.4.1 gives for each, and the view reads the rest with `receive_json()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from quart import websocket

from ..config import Settings
from ..errors import InsufficientPermissions, ServiceUnavailable, TokenInvalid
from ..faults import is_store_failure
from ..live_sockets import SESSION_ENDED, TRY_AGAIN_LATER, Watched
from ..models import User
from ..permissions import Needs
from ..tokens import Claims
from .state import Caller, services, state

log = logging.getLogger(__name__)

AUTH_SECONDS = 5.0
UNSUPPORTED_DATA = 1003
INVALID_PAYLOAD = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
FORBIDDEN = 4403  # HTTP 403's counterpart after accept
# Messages the client sent that the view has not read yet; past that the client is flooding.
INBOX_SIZE = 64


class Closing(Exception):
    """The socket must close with this code and reason (raised while reading a message)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class RateLimit:
    """A token bucket: `rate` messages a second on average, bursts of up to `rate`."""

    rate: float
    tokens: float = 0.0
    last: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.rate

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Channel:
    """One open socket at the edge: who is on it, what they sent, and how it is to end."""

    def __init__(self, settings: Settings, needs: Needs) -> None:
        self.needs = needs
        self.max_bytes = settings.ws_max_message_bytes
        self.rate = RateLimit(settings.ws_messages_per_second)
        self.inbox: asyncio.Queue[Any] = asyncio.Queue(INBOX_SIZE)
        loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[tuple[int, str]] = loop.create_future()
        self.authenticated: asyncio.Future[None] = loop.create_future()
        self.caller: Caller | None = None
        self.watched: Watched | None = None

    def end(self, code: int, reason: str) -> None:
        """Have the socket closed with this code (the watch calls it; so does the reader)."""
        if not self.ended.done():
            self.ended.set_result((code, reason))

    def parse(self, data: str | bytes) -> Any:
        """The JSON value of one message, or Closing for what the socket does not accept."""
        if not self.rate.take():
            raise Closing(POLICY_VIOLATION, "Too many messages")
        if isinstance(data, bytes):
            raise Closing(UNSUPPORTED_DATA, "Binary messages are not accepted")
        if _too_big(data, self.max_bytes):
            raise Closing(MESSAGE_TOO_BIG, f"Message too big (limit {self.max_bytes} bytes)")
        try:
            return json.loads(data)
        except ValueError:
            raise Closing(INVALID_PAYLOAD, "Messages must be JSON") from None


def _too_big(text: str, limit: int) -> bool:
    if len(text) > limit:
        return True
    # Only text that could exceed the limit once encoded is encoded to find out.
    return len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit


def auth_token(message: Any) -> str | None:
    """The token of an auth message `{"type": "auth", "token": ...}`, else None."""
    if isinstance(message, dict) and message.get("type") == "auth":
        token = message.get("token")
        return token if isinstance(token, str) else ""
    return None


async def receive_json() -> Any:
    """The next JSON message the client sent on the current authenticated socket."""
    channel = state().socket
    if channel is None:
        raise RuntimeError("receive_json() outside a token_required websocket view")
    return await channel.inbox.get()


async def guard_socket(
    view: Callable[..., Awaitable[Any]],
    token: str | None,
    needs: Needs,
    *args: Any,
    **kwargs: Any,
) -> None:
    """Run a websocket view for an authenticated caller only, closing it when that ends."""
    channel = Channel(services().settings, needs)
    if token is not None:
        if not token:
            raise TokenInvalid()
        # Before accept: a bad token is an HTTP 401 (a missing role 403) through the handlers.
        user, claims = await services().sessions.user_for_access(token)
        needs.check(user.roles, None)
        channel.caller = Caller(user, claims)
        channel.authenticated.set_result(None)
    await websocket.accept()
    state().socket = channel
    reader = asyncio.create_task(_read(channel))
    view_task: asyncio.Task[Any] | None = None
    try:
        if await _authenticated(channel):
            assert channel.caller is not None
            channel.watched = _watch(channel, channel.caller.claims)
            view_task = asyncio.ensure_future(view(channel.caller.user, *args, **kwargs))
            running: set[asyncio.Future[Any]] = {view_task, channel.ended}
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, view_task):
            if task is not None:
                task.cancel()
        if channel.watched is not None:
            services().sockets.forget(channel.watched)
    await _finish(channel, view_task)


async def _authenticated(channel: Channel) -> bool:
    """Whether the socket is authenticated, waiting AUTH_SECONDS for an auth message if need be."""
    waited: set[asyncio.Future[Any]] = {channel.authenticated, channel.ended}
    done, _ = await asyncio.wait(
        waited,
        timeout=AUTH_SECONDS,
        return_when=asyncio.FIRST_COMPLETED,
    )
    if channel.authenticated.done() and not channel.ended.done():
        return True
    channel.end(SESSION_ENDED, TokenInvalid.message if done else "Token is missing!")
    return False


def _watch(channel: Channel, claims: Claims) -> Watched:
    return services().sockets.watch(
        claims.session_id, claims.public_id, claims.expires_at, channel.end
    )


async def _finish(channel: Channel, view_task: asyncio.Task[Any] | None) -> None:
    """Close with the code the socket ended with; a view that failed is an internal error."""
    if view_task is not None and view_task.done() and not view_task.cancelled():
        error = view_task.exception()
        if error is not None:
            log.error("websocket view failed", exc_info=error)
            channel.end(INTERNAL_ERROR, "Internal error")
    if channel.ended.done():
        code, reason = channel.ended.result()
        await websocket.close(code, reason)


async def _read(channel: Channel) -> None:
    """Read every message of the socket: auth messages here, the rest for the view."""
    try:
        while True:
            message = channel.parse(await websocket.receive())
            token = auth_token(message)
            if token is not None:
                await _authenticate(channel, token)
            elif not channel.authenticated.done():
                raise Closing(SESSION_ENDED, "Token is missing!")
            else:
                channel.inbox.put_nowait(message)
    except Closing as closing:
        channel.end(closing.code, closing.reason)
    except asyncio.QueueFull:
        channel.end(POLICY_VIOLATION, "Too many unread messages")
    except Exception:
        log.exception("reading a websocket")
        channel.end(INTERNAL_ERROR, "Internal error")


async def _authenticate(channel: Channel, token: str) -> None:
    """A first or renewed token: it must be valid and name the socket's user."""
    try:
        user, claims = await services().sessions.user_for_access(token)
    except TokenInvalid:
        raise Closing(SESSION_ENDED, TokenInvalid.message) from None
    except Exception as error:
        if not (isinstance(error, ServiceUnavailable) or is_store_failure(error)):
            raise
        raise Closing(TRY_AGAIN_LATER, ServiceUnavailable.message) from None
    if channel.caller is not None and channel.caller.user.public_id != user.public_id:
        raise Closing(SESSION_ENDED, "Token is for another user")
    try:
        channel.needs.check(user.roles, None)
    except InsufficientPermissions as refused:
        raise Closing(FORBIDDEN, refused.message) from None
    channel.caller = Caller(user, claims)
    if channel.watched is not None:
        services().sockets.renew(
            channel.watched, claims.session_id, claims.public_id, claims.expires_at
        )
    if not channel.authenticated.done():
        channel.authenticated.set_result(None)
    await websocket.send_json({"type": "authenticated", "expires_at": claims.expires_at})


def socket_user() -> User:
    """The user of the current authenticated socket (inside a `token_required` websocket view)."""
    channel = state().socket
    if channel is None or channel.caller is None:
        raise RuntimeError("socket_user() outside a token_required websocket view")
    return channel.caller.user
