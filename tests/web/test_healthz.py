"""SPEC §9: GET /healthz is 200 only when the database answers at this code's schema revision
and Redis, when configured, answers; otherwise 503 with what failed."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from quart_auth_app import migrate

from ..conftest import TEST_REDIS_URL, running_app, services_on

UNREACHABLE = {
    "sqlite": "sqlite+aiosqlite:////nonexistent-directory/qaa/app.db",
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:1/none",
}
SCHEMA_BEHIND = "schema behind: run quart-auth-app db upgrade"


async def run_sql(database_url: str, *statements: str) -> None:
    """Statements on the app's database, from outside the app (as an operator's psql would)."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def health(client: Any) -> tuple[int, Any, str | None]:
    response = await client.get("/healthz")
    return response.status_code, await response.get_json(), response.headers.get("Retry-After")


async def test_healthz_ok(client: Any) -> None:
    assert await health(client) == (200, {"status": "ok"}, None)


@pytest.mark.parametrize("kind", sorted(UNREACHABLE))
async def test_healthz_503_when_database_is_unreachable(app: Quart, client: Any, kind: str) -> None:
    async with services_on(app, UNREACHABLE[kind]):
        down = await health(client)
    assert down == (503, {"status": "unavailable", "checks": {"database": "unreachable"}}, "5")
    assert (await health(client))[0] == 200  # back once the database is


async def test_healthz_503_when_redis_is_unreachable(app_config: dict[str, Any]) -> None:
    async with running_app({**app_config, "REDIS_URL": "redis://127.0.0.1:1/0"}) as app:
        down = await health(app.test_client())
    checks = {"database": "ok", "redis": "unreachable"}
    assert down == (503, {"status": "unavailable", "checks": checks}, "5")


@pytest.mark.skipif(not TEST_REDIS_URL, reason="set TEST_REDIS_URL to run Redis tests")
async def test_healthz_ok_when_redis_answers(app_config: dict[str, Any]) -> None:
    assert TEST_REDIS_URL is not None
    async with running_app({**app_config, "REDIS_URL": TEST_REDIS_URL}) as app:
        assert await health(app.test_client()) == (200, {"status": "ok"}, None)


async def test_healthz_503_when_the_schema_is_missing(client: Any, database_url: str) -> None:
    await run_sql(database_url, "DROP TABLE alembic_version")
    down = await health(client)
    assert down == (503, {"status": "unavailable", "checks": {"database": SCHEMA_BEHIND}}, "5")
    await run_sql(
        database_url,
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        f"INSERT INTO alembic_version VALUES ('{migrate.HEAD_REVISION}')",
    )
    assert (await health(client))[0] == 200  # migrated again: healthy, no restart


async def test_healthz_503_when_the_code_expects_a_newer_schema(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As after deploying code with one more migration and not running `db upgrade`.
    monkeypatch.setattr(migrate, "REVISIONS", (*migrate.REVISIONS, "9001"))
    monkeypatch.setattr(migrate, "HEAD_REVISION", "9001")
    down = await health(client)
    assert down == (503, {"status": "unavailable", "checks": {"database": SCHEMA_BEHIND}}, "5")


async def test_healthz_ok_when_the_schema_is_newer_than_the_code(
    client: Any, database_url: str
) -> None:
    # A rolling deploy migrated first: the instances still on the old code keep serving.
    await run_sql(database_url, "UPDATE alembic_version SET version_num = '9001'")
    assert await health(client) == (200, {"status": "ok"}, None)
