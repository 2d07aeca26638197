"""SPEC §8: GET /healthz answers 200 while the database answers, 503 when it does not."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart
from sqlalchemy.ext.asyncio import create_async_engine

from quart_auth_app.db import session_factory

UNREACHABLE = {
    "sqlite": "sqlite+aiosqlite:////nonexistent-directory/qaa/app.db",
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:1/none",
}


async def test_healthz_ok(client: Any) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


@pytest.mark.parametrize("backend", sorted(UNREACHABLE))
async def test_healthz_503_when_database_is_unreachable(
    app: Quart, client: Any, backend: str
) -> None:
    broken = create_async_engine(UNREACHABLE[backend])
    healthy = app.extensions["db_sessions"]
    app.extensions["db_sessions"] = session_factory(broken)
    try:
        response = await client.get("/healthz")
    finally:
        app.extensions["db_sessions"] = healthy
        await broken.dispose()
    assert response.status_code == 503
    assert (await response.get_json())["status"] != "ok"
    assert (await client.get("/healthz")).status_code == 200  # back once the database is
