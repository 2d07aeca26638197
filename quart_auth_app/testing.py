"""Test helpers for this project and for apps built on it: users, signed-in clients, tokens
(JWTs from sign_in and mint_token, personal access tokens from make_pat and pat_client).

Use inside `async with app.test_app():` so start-up hooks (engine, schema) have run, as the `app`
fixture of the package's pytest plugin (pytest_plugin.py) is::

    user = await make_user(app, name="Ann")
    client = await bearer_client(app, user)
    response = await client.get("/my/protected/route")

    tokens = await sign_in(app, user)
    async with bearer_websocket(app, "/ws/my-socket", tokens.access_token) as socket:
        welcome = await socket.receive_json()
        ...
        assert await close_code(socket) == 4401  # once the session has ended
    await deliver_mail(app)  # after a request that mails: the outbox has tried to send it
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from quart import Quart
from quart.testing import QuartClient
from quart.testing.connections import WebsocketDisconnectError
from quart.typing import TestClientProtocol, TestWebsocketConnectionProtocol
from sqlalchemy.ext.asyncio import AsyncSession

from . import access_tokens
from .lookups import find_by_email
from .models import User
from .outbox import MailSender
from .permissions import checked_names
from .roles import grant
from .services import Services
from .sessions import TokenPair
from .users import create_user, mark_verified
from .web.auth import ACCESS_COOKIE, REFRESH_COOKIE

DEFAULT_PASSWORD = "a perfectly fine passphrase"  # noqa: S105 - a test fixture


@dataclass
class SignedIn:
    """A user with the tokens of one live session."""

    user: User
    tokens: TokenPair
    password: str


def app_services(app: Quart) -> Services:
    """The services of an app built by create_app() (inside `app.test_app()`)."""
    found: Services | None = app.extensions.get("services")
    if found is None:
        raise RuntimeError("the app is not serving: use it inside `async with app.test_app():`")
    return found


def db_session(app: Quart) -> AsyncSession:
    """A new database session on the app's engine (use it as `async with db_session(app) as db`)."""
    return app_services(app).db_sessions()


async def make_user(
    app: Quart,
    name: str = "Test User",
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    *,
    verified: bool = False,
    roles: Iterable[str] = (),
) -> User:
    """Create a user directly in the app's database, holding `roles` (e.g. `["admin"]`)."""
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    services = app_services(app)
    async with services.db_sessions() as db:
        user = await create_user(db, services.hasher, name, email, password)
        if verified:
            await mark_verified(db, user.id)
            user.email_verified = True
        for role in roles:
            await grant(db, user.id, role)
        if roles:
            # Read back as the access check reads it, so `user.roles` says what was granted.
            user = await find_by_email(db, email) or user
    return user


async def deliver_mail(app: Quart) -> None:
    """Wait until the app's outbox has tried every mail due now (mails leave after the answer)."""
    sender: MailSender | None = app.extensions.get("mail_sender")
    if sender is None:
        raise RuntimeError("the app is not serving: use it inside `async with app.test_app():`")
    await sender.drain()


async def sign_in(app: Quart, user: User, user_agent: str = "pytest") -> TokenPair:
    """Open a session for the user and return its tokens, as a login would."""
    return await app_services(app).sessions.start(user, user_agent, "127.0.0.1")


class BearerClient:
    """A test client that sends `Authorization: Bearer <token>` on every request."""

    def __init__(self, client: TestClientProtocol, token: str) -> None:
        self.client = client
        self.token = token

    def __getattr__(self, method: str) -> Any:
        call = getattr(self.client, method)

        async def with_header(*args: Any, **kwargs: Any) -> Any:
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("Authorization", f"Bearer {self.token}")
            return await call(*args, headers=headers, **kwargs)

        return with_header


async def bearer_client(app: Quart, user: User) -> BearerClient:
    """A client authenticated by a bearer header for a new session of the user."""
    tokens = await sign_in(app, user)
    return BearerClient(app.test_client(), tokens.access_token)


async def make_pat(
    app: Quart,
    user: User,
    scopes: Iterable[str] = ("profile:read",),
    *,
    name: str = "test token",
    expires_in_days: int | None = None,
) -> str:
    """Make a personal access token for the user and return its secret (send it as a bearer).

    Any valid scope name is accepted, those of routes not yet declared included.
    """
    chosen = checked_names(scopes, "scope")
    async with app_services(app).db_sessions() as db:
        made = await access_tokens.create(db, user, name, chosen, expires_in_days)
    return made.secret


async def pat_client(
    app: Quart, user: User, scopes: Iterable[str] = ("profile:read",)
) -> BearerClient:
    """A client authenticated by a new personal access token of the user with `scopes`."""
    return BearerClient(app.test_client(), await make_pat(app, user, scopes))


async def cookie_client(app: Quart, user: User) -> QuartClient:
    """A client authenticated by the access and refresh cookies, as a browser after login."""
    tokens = await sign_in(app, user)
    client = app.test_client()
    client.set_cookie("localhost", ACCESS_COOKIE, tokens.access_token)
    client.set_cookie("localhost", REFRESH_COOKIE, tokens.refresh_token)
    return client  # type: ignore[return-value]


def bearer_websocket(
    app: Quart, path: str, token: str, headers: dict[str, str] | None = None
) -> TestWebsocketConnectionProtocol:
    """A test websocket to `path` whose handshake carries `Authorization: Bearer <token>`.

    Use as `async with bearer_websocket(app, path, token) as socket:`; a refused handshake
    raises quart.testing.WebsocketResponseError (its `.response` is the 401 or 403).
    """
    sent = {"Authorization": f"Bearer {token}", **(headers or {})}
    return app.test_client().websocket(path, headers=sent)


async def close_code(socket: TestWebsocketConnectionProtocol, within: float = 3.0) -> int:
    """The close code the server ends the socket with, skipping messages before it.

    TimeoutError when the socket is still open after `within` seconds.
    """
    async with asyncio.timeout(within):
        while True:
            try:
                await socket.receive()
            except WebsocketDisconnectError as closed:
                code: int = closed.args[0]
                return code


def mint_token(
    app: Quart,
    public_id: str,
    session_id: str = "none",
    token_type: str = "access",  # noqa: S107 - a claim value, not a secret
    **claims: Any,
) -> str:
    """Sign a token with chosen claims; a claim given as None is left out."""
    tokens = app_services(app).tokens
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": public_id,
        "public_id": public_id,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "type": token_type,
        "iss": tokens.issuer,
        "sid": session_id,
    }
    payload.update(claims)
    payload = {key: value for key, value in payload.items() if value is not None}
    return jwt.encode(
        payload,
        tokens.keys.signing_key,
        algorithm=tokens.keys.algorithm,
        headers={"kid": tokens.keys.kid},
    )
