"""Authenticated websockets (SPEC §12) through Quart's test client, on every backend."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from quart import Quart, websocket
from quart.testing import WebsocketResponseError
from quart.typing import TestClientProtocol as Client
from quart.typing import TestWebsocketConnectionProtocol as Socket
from redis.asyncio import Redis
from sqlalchemy import update

from quart_auth_app import recovery
from quart_auth_app.models import User
from quart_auth_app.testing import (
    DEFAULT_PASSWORD,
    SignedIn,
    bearer_websocket,
    close_code,
    db_session,
    make_user,
    mint_token,
    sign_in,
)
from quart_auth_app.web import sockets
from quart_auth_app.web.auth import ACCESS_COOKIE, token_required

from ..conftest import TEST_REDIS_URL, bearer

PATH = "/ws/dashboard"
needs_redis = pytest.mark.skipif(not TEST_REDIS_URL, reason="set TEST_REDIS_URL to run Redis tests")
# The spec's bound for closing a socket whose session ended, plus the test client's own delay.
ENDS_WITHIN = 2.5


async def refused(app: Quart, headers: dict[str, str], path: str = PATH) -> Any:
    """The HTTP answer to a websocket handshake that is refused before accept."""
    with pytest.raises(WebsocketResponseError) as refusal:
        async with app.test_client().websocket(path, headers=headers) as socket:
            await socket.receive()
    return refusal.value.response


async def welcomed(socket: Socket) -> dict[str, Any]:
    message: dict[str, Any] = await asyncio.wait_for(socket.receive_json(), 3)
    return message


async def test_bearer_handshake_is_welcomed_and_echoed(app: Quart, signed_in: SignedIn) -> None:
    async with bearer_websocket(app, PATH, signed_in.tokens.access_token) as socket:
        assert await welcomed(socket) == {"message": "Welcome Ann! You are logged in."}
        await socket.send_json({"hello": ["world", 1]})
        assert await socket.receive_json() == {
            "echo": {"hello": ["world", 1]},
            "public_id": signed_in.user.public_id,
        }


async def test_access_cookie_authenticates_the_handshake(app: Quart, signed_in: SignedIn) -> None:
    client = app.test_client()
    client.set_cookie("localhost", ACCESS_COOKIE, signed_in.tokens.access_token)
    async with client.websocket(PATH) as socket:
        assert (await welcomed(socket))["message"] == "Welcome Ann! You are logged in."


async def test_first_auth_message_authenticates(app: Quart, signed_in: SignedIn) -> None:
    async with app.test_client().websocket(PATH) as socket:
        await socket.send_json({"type": "auth", "token": signed_in.tokens.access_token})
        assert (await welcomed(socket))["type"] == "authenticated"
        assert (await welcomed(socket))["message"] == "Welcome Ann! You are logged in."


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}],
    ids=["bad-token", "not-bearer"],
)
async def test_bad_token_in_handshake_is_401_before_accept(
    app: Quart, headers: dict[str, str]
) -> None:
    response = await refused(app, headers)
    assert response.status_code == 401
    assert json.loads(await response.get_data()) == {"message": "Token is invalid!"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_logged_out_token_in_handshake_is_refused(
    app: Quart, client: Client, signed_in: SignedIn
) -> None:
    token = signed_in.tokens.access_token
    assert (await client.post("/logout", headers=bearer(token))).status_code == 200
    assert (await refused(app, bearer(token))).status_code == 401


@pytest.mark.parametrize("name", ["token", "access_token", "jwt_token"])
async def test_token_in_the_url_is_ignored(app: Quart, signed_in: SignedIn, name: str) -> None:
    async with app.test_client().websocket(f"{PATH}?{name}={signed_in.tokens.access_token}") as ws:
        await ws.send_json({"hello": 1})  # not an auth message: the URL's token counted for nothing
        assert await close_code(ws) == 4401


async def test_no_auth_message_within_the_limit_closes_4401(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sockets, "AUTH_SECONDS", 0.3)
    async with app.test_client().websocket(PATH) as socket:
        assert await close_code(socket) == 4401


async def test_bad_auth_message_closes_4401(app: Quart) -> None:
    async with app.test_client().websocket(PATH) as socket:
        await socket.send_json({"type": "auth", "token": "nonsense"})
        assert await close_code(socket) == 4401


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost.evil"])
async def test_cross_origin_handshake_is_403(app: Quart, signed_in: SignedIn, origin: str) -> None:
    headers = {**bearer(signed_in.tokens.access_token), "Origin": origin}
    response = await refused(app, headers)
    assert response.status_code == 403
    assert json.loads(await response.get_data()) == {"message": "Cross-origin websocket refused"}


async def test_same_origin_handshake_is_accepted(app: Quart, signed_in: SignedIn) -> None:
    headers = {"Origin": "http://localhost"}
    async with bearer_websocket(app, PATH, signed_in.tokens.access_token, headers) as socket:
        assert "message" in await welcomed(socket)


async def test_unknown_websocket_path_is_404(app: Quart, caplog: pytest.LogCaptureFixture) -> None:
    response = await refused(app, {}, "/ws/nothing-here")
    assert response.status_code == 404
    assert json.loads(await response.get_data()) == {"message": "Not found"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture
def app_config(app_config: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    """The test's `settings` marker applied; with `via="redis"`, the app announces on Redis."""
    marker = request.node.get_closest_marker("settings")
    if marker is not None:
        app_config.update(marker.kwargs)
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("via") == "redis":
        assert TEST_REDIS_URL is not None
        app_config.update(REDIS_URL=TEST_REDIS_URL, REDIS_KEY_PREFIX=f"qaa-ws-{uuid.uuid4().hex}")
    return app_config


VIA = [
    "database",
    pytest.param("redis", marks=needs_redis),
]


# Each way a session ends, done through the API as a client would.
async def _logout(client: Client, signed: SignedIn) -> None:
    response = await client.post("/logout", headers=bearer(signed.tokens.access_token))
    assert response.status_code == 200


async def _logout_all(client: Client, signed: SignedIn) -> None:
    response = await client.post("/logout/all", headers=bearer(signed.tokens.access_token))
    assert response.status_code == 200


async def _revoke_from_devices(client: Client, signed: SignedIn) -> None:
    path = f"/me/sessions/{signed.tokens.session_id}"
    response = await client.delete(path, headers=bearer(signed.tokens.access_token))
    assert response.status_code == 204


async def _delete_account(client: Client, signed: SignedIn) -> None:
    response = await client.delete(
        "/me", json={"password": DEFAULT_PASSWORD}, headers=bearer(signed.tokens.access_token)
    )
    assert response.status_code == 204


ENDINGS: dict[str, Callable[[Client, SignedIn], Awaitable[None]]] = {
    "logout": _logout,
    "logout-all": _logout_all,
    "revoked-device": _revoke_from_devices,
    "account-deleted": _delete_account,
}


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("ending", ENDINGS)
async def test_socket_closes_4401_when_its_session_ends(
    app: Quart, client: Client, signed_in: SignedIn, ending: str, via: str
) -> None:
    async with bearer_websocket(app, PATH, signed_in.tokens.access_token) as socket:
        await welcomed(socket)
        await ENDINGS[ending](client, signed_in)
        assert await close_code(socket, within=ENDS_WITHIN) == 4401


async def test_password_change_closes_the_other_sessions_sockets(
    app: Quart, client: Client, signed_in: SignedIn
) -> None:
    other = await sign_in(app, signed_in.user, "other device")
    async with bearer_websocket(app, PATH, other.access_token) as socket:
        await welcomed(socket)
        response = await client.post(
            "/me/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": "another fine passphrase"},
            headers=bearer(signed_in.tokens.access_token),
        )
        assert response.status_code == 204
        assert await close_code(socket, within=ENDS_WITHIN) == 4401


async def test_password_reset_closes_the_socket(
    app: Quart, client: Client, signed_in: SignedIn
) -> None:
    async with db_session(app) as db:
        token = await recovery.issue(db, signed_in.user, recovery.RESET)
    async with bearer_websocket(app, PATH, signed_in.tokens.access_token) as socket:
        await welcomed(socket)
        response = await client.post(
            "/password/reset", json={"token": token, "new_password": "a brand new passphrase"}
        )
        assert response.status_code == 204
        assert await close_code(socket, within=ENDS_WITHIN) == 4401


async def test_ending_one_session_leaves_the_others_sockets_open(
    app: Quart, client: Client, signed_in: SignedIn
) -> None:
    other = await sign_in(app, signed_in.user, "other device")
    async with bearer_websocket(app, PATH, other.access_token) as socket:
        await welcomed(socket)
        await _logout(client, signed_in)
        await asyncio.sleep(1.5)  # past a liveness check
        await socket.send_json("still here?")
        assert (await socket.receive_json())["echo"] == "still here?"


@pytest.mark.settings(JWT_ACCESS_TOKEN_EXPIRES="2")
async def test_socket_closes_when_its_token_expires(app: Quart, signed_in: SignedIn) -> None:
    async with bearer_websocket(app, PATH, signed_in.tokens.access_token) as socket:
        await welcomed(socket)
        assert await close_code(socket, within=4.5) == 4401


@pytest.mark.settings(JWT_ACCESS_TOKEN_EXPIRES="2")
async def test_auth_message_renews_an_expiring_token(app: Quart, signed_in: SignedIn) -> None:
    async with bearer_websocket(app, PATH, signed_in.tokens.access_token) as socket:
        await welcomed(socket)
        first_expiry = time.time() + 2
        # As a refresh would give: the same session, a later expiry.
        renewed = mint_token(
            app,
            signed_in.user.public_id,
            signed_in.tokens.session_id,
            exp=int(time.time()) + 30,
        )
        await socket.send_json({"type": "auth", "token": renewed})
        assert (await socket.receive_json())["type"] == "authenticated"
        await asyncio.sleep(first_expiry - time.time() + 1.5)  # past the first token's expiry
        await socket.send_json("renewed")
        assert (await socket.receive_json())["echo"] == "renewed"


async def test_auth_message_for_another_user_closes(app: Quart, signed_in: SignedIn) -> None:
    stranger = await sign_in(app, await make_user(app, name="Bob"))
    async with bearer_websocket(app, PATH, signed_in.tokens.access_token) as socket:
        await welcomed(socket)
        await socket.send_json({"type": "auth", "token": stranger.access_token})
        assert await close_code(socket) == 4401


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00binary", 1003),
        ("{not json", 1007),
        (json.dumps({"big": "x" * 20_000}), 1009),
    ],
    ids=["binary", "malformed", "too-big"],
)
async def test_unacceptable_frames_close_with_a_clear_code(
    app: Quart,
    signed_in: SignedIn,
    caplog: pytest.LogCaptureFixture,
    frame: str | bytes,
    code: int,
) -> None:
    async with bearer_websocket(app, PATH, signed_in.tokens.access_token) as socket:
        await welcomed(socket)
        await socket.send(frame)
        assert await close_code(socket) == code
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.settings(WS_MESSAGES_PER_SECOND="5")
async def test_too_many_messages_close_1008(app: Quart, signed_in: SignedIn) -> None:
    async with bearer_websocket(app, PATH, signed_in.tokens.access_token) as socket:
        await welcomed(socket)
        for number in range(30):
            await socket.send_json(number)
        assert await close_code(socket) == 1008


@pytest.mark.settings(WS_MAX_MESSAGE_BYTES="128")
async def test_message_size_limit_is_a_setting(app: Quart, signed_in: SignedIn) -> None:
    async with bearer_websocket(app, PATH, signed_in.tokens.access_token) as socket:
        await welcomed(socket)
        await socket.send(f'"{"é" * 60}"')  # 122 bytes: under the limit
        assert (await socket.receive_json())["echo"] == "é" * 60
        await socket.send(f'"{"é" * 70}"')  # 142 bytes encoded, 72 characters
        assert await close_code(socket) == 1009


@pytest.mark.parametrize("via", [pytest.param("redis", marks=needs_redis)])
async def test_revocation_published_on_redis_closes_the_socket(
    app: Quart, signed_in: SignedIn, via: str
) -> None:
    # Announced only (no database change): the push alone must close it.
    settings = app.extensions["services"].settings
    redis = Redis.from_url(settings.redis_url)
    try:
        async with bearer_websocket(app, PATH, signed_in.tokens.access_token) as socket:
            await welcomed(socket)
            await redis.publish(
                f"{settings.redis_key_prefix}:revocations", signed_in.tokens.session_id
            )
            assert await close_code(socket, within=ENDS_WITHIN) == 4401
    finally:
        await redis.aclose()


@pytest.mark.parametrize("via", [pytest.param("redis", marks=needs_redis)])
async def test_logout_announces_the_session_on_redis(
    app: Quart, client: Client, signed_in: SignedIn, via: str
) -> None:
    settings = app.extensions["services"].settings
    redis = Redis.from_url(settings.redis_url)
    try:
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(f"{settings.redis_key_prefix}:revocations")
            await _logout(client, signed_in)
            async with asyncio.timeout(3):
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message is not None:
                        break
        assert message["data"].decode() == signed_in.tokens.session_id
    finally:
        await redis.aclose()


@pytest.mark.parametrize("via", VIA)
async def test_deactivation_closes_the_socket(app: Quart, signed_in: SignedIn, via: str) -> None:
    async with bearer_websocket(app, PATH, signed_in.tokens.access_token) as socket:
        await welcomed(socket)
        async with db_session(app) as db:  # as an admin's deactivation writes it
            await db.execute(
                update(User).where(User.id == signed_in.user.id).values(is_active=False)
            )
            await db.commit()
        assert await close_code(socket, within=ENDS_WITHIN) == 4401


async def test_websocket_route_with_a_role_refuses_a_user_without_it(
    app: Quart, signed_in: SignedIn
) -> None:
    @app.websocket("/ws/admins")
    @token_required(roles=["admin"])
    async def admins_only(user: User) -> None:
        await websocket.send_json({"admin": user.name})

    response = await refused(app, bearer(signed_in.tokens.access_token), "/ws/admins")
    assert response.status_code == 403
