"""SPEC §8: GET /healthz answers 200 while the database answers, 503 when it does not."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart

from ..conftest import services_on

UNREACHABLE = {
    "sqlite": "sqlite+aiosqlite:////nonexistent-directory/qaa/app.db",
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:1/none",
}


async def test_healthz_ok(client: Any) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


@pytest.mark.parametrize("kind", sorted(UNREACHABLE))
async def test_healthz_503_when_database_is_unreachable(app: Quart, client: Any, kind: str) -> None:
    async with services_on(app, UNREACHABLE[kind]):
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert (await response.get_json())["status"] != "ok"
    assert (await client.get("/healthz")).status_code == 200  # back once the database is
