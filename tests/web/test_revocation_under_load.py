"""Issue 22: on PostgreSQL, under concurrent load, every way a session ends holds at once.

Two app instances share one database; a load of other users' requests keeps the access check
batching on both while a session is ended through one of them. The very next request with
the ended session's token is refused on both, and the load never sees anything but 200.
Run with the accelerated store (batched reads) and the plain one (the engine).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import update

from quart_auth_app import create_app
from quart_auth_app.models import User
from quart_auth_app.sessions import TokenPair
from quart_auth_app.testing import DEFAULT_PASSWORD, db_session, make_user, sign_in

from ..conftest import TEST_DATABASE_URL, bearer, running_app

pytestmark = [
    pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL (PostgreSQL)"),
    pytest.mark.parametrize("backend", ["postgresql"], indirect=True),
]
LOAD_USERS = 8
LOAD_LIMIT = 3000  # requests at most, whatever happens


@pytest.fixture(params=["accelerated", "plain"])
async def pair(
    request: pytest.FixtureRequest, app_config: dict[str, Any]
) -> AsyncIterator[tuple[Quart, Quart]]:
    """Two instances on one PostgreSQL database."""
    app_config["ACCELERATIONS"] = "true" if request.param == "accelerated" else "false"
    app_config["RATE_LIMIT_ENABLED"] = "false"
    async with running_app(app_config) as first:
        second = create_app(app_config)
        async with second.test_app():
            yield first, second


@contextlib.asynccontextmanager
async def under_load(apps: tuple[Quart, Quart]) -> AsyncIterator[list[int]]:
    """Other users' requests on both instances for the block; yields their statuses."""
    first = apps[0]
    tokens = [await sign_in(first, await make_user(first)) for _ in range(LOAD_USERS)]
    statuses: list[int] = []
    stop = asyncio.Event()

    async def loop(app: Quart, token: TokenPair) -> None:
        client = app.test_client()
        while not stop.is_set() and len(statuses) < LOAD_LIMIT:
            response = await client.get("/dashboard", headers=bearer(token.access_token))
            statuses.append(response.status_code)

    tasks = [asyncio.ensure_future(loop(app, t)) for app in apps for t in tokens]
    await asyncio.sleep(0.2)
    try:
        yield statuses
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def logout(app: Quart, victim: User, tokens: TokenPair) -> None:
    response = await app.test_client().post("/logout", headers=bearer(tokens.access_token))
    assert response.status_code == 200


async def logout_all(app: Quart, victim: User, tokens: TokenPair) -> None:
    response = await app.test_client().post("/logout/all", headers=bearer(tokens.access_token))
    assert response.status_code == 200


async def session_deleted(app: Quart, victim: User, tokens: TokenPair) -> None:
    other = await sign_in(app, victim)  # from another device, the victim ends this one
    response = await app.test_client().delete(
        f"/me/sessions/{tokens.session_id}", headers=bearer(other.access_token)
    )
    assert response.status_code == 204


async def password_changed(app: Quart, victim: User, tokens: TokenPair) -> None:
    other = await sign_in(app, victim)  # the change on another device ends this session
    response = await app.test_client().post(
        "/me/password",
        headers=bearer(other.access_token),
        json={"current_password": DEFAULT_PASSWORD, "new_password": "a new passphrase here"},
    )
    assert response.status_code == 204


async def deactivated(app: Quart, victim: User, tokens: TokenPair) -> None:
    async with db_session(app) as db:
        await db.execute(update(User).where(User.id == victim.id).values(is_active=False))
        await db.commit()


ENDINGS: list[Callable[[Quart, User, TokenPair], Awaitable[None]]] = [
    logout,
    logout_all,
    session_deleted,
    password_changed,
    deactivated,
]


@pytest.mark.parametrize("ending", ENDINGS, ids=lambda ending: ending.__name__)
async def test_an_ended_session_is_refused_at_once_on_both_instances_under_load(
    pair: tuple[Quart, Quart],
    ending: Callable[[Quart, User, TokenPair], Awaitable[None]],
) -> None:
    first, second = pair
    victim = await make_user(first)
    tokens = await sign_in(first, victim)
    headers = bearer(tokens.access_token)
    async with under_load(pair) as statuses:
        for app in pair:
            assert (await app.test_client().get("/dashboard", headers=headers)).status_code == 200
        await ending(first, victim, tokens)
        answers = await asyncio.gather(
            *(app.test_client().get("/dashboard", headers=headers) for app in (second, first))
        )
        assert [a.status_code for a in answers] == [401, 401]
    assert statuses and set(statuses) == {200}
