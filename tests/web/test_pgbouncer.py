"""Issue 22: behind pgbouncer in transaction mode (DATABASE_STATEMENT_CACHE_SIZE=0) all works.

In transaction mode consecutive statements of one client may run on different server
connections, so named prepared statements collide or vanish; the access check's batched reader
and the engine must both keep to what such a pooler allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart

from quart_auth_app.testing import DEFAULT_PASSWORD, make_user

from ..conftest import TEST_DATABASE_URL, bearer, running_app
from ..stores import Unavailable, throwaway_pgbouncer

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL")


@pytest.fixture(params=["accelerated", "plain"])
async def app(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Quart]:
    assert TEST_DATABASE_URL is not None
    try:
        bouncer = throwaway_pgbouncer(TEST_DATABASE_URL)
        url = bouncer.__enter__()
    except Unavailable as missing:
        pytest.skip(str(missing))
    config = {
        "DATABASE_URL": url,
        "DATABASE_STATEMENT_CACHE_SIZE": "0",
        "INSTANCE_PATH": str(tmp_path),
        "ACCELERATIONS": "true" if request.param == "accelerated" else "false",
        "RATE_LIMIT_ENABLED": "false",
        "ARGON2_MEMORY_COST": "8192",
        "ARGON2_TIME_COST": "1",
    }
    try:
        async with running_app(config) as application:
            yield application
    finally:
        bouncer.__exit__(None, None, None)


async def test_logins_and_protected_requests_work_through_pgbouncer(app: Quart) -> None:
    users = [await make_user(app) for _ in range(6)]
    client = app.test_client()

    async def one_user(email: str) -> list[int]:
        login = await client.post("/login", json={"email": email, "password": DEFAULT_PASSWORD})
        tokens = await login.get_json()
        headers = bearer(tokens["access_token"])
        statuses = [login.status_code]
        for _ in range(5):
            statuses.append((await client.get("/dashboard", headers=headers)).status_code)
        refreshed = await client.post(
            "/token/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        statuses.append(refreshed.status_code)
        statuses.append((await client.post("/logout", headers=headers)).status_code)
        statuses.append((await client.get("/dashboard", headers=headers)).status_code)
        return statuses

    results = await asyncio.gather(*(one_user(user.email) for user in users))
    assert results == [[200, 200, 200, 200, 200, 200, 200, 200, 401]] * len(users)
