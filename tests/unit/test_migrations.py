"""SPEC §8: Alembic migrations build exactly the schema the models describe, once per start."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from quart import Quart
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from quart_auth_app.migrate import alembic_config, upgrade_database
from quart_auth_app.models import Base

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
PG_DATABASE = "qaa_migrations"
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def fresh_postgres(base_url: str) -> str:
    """A database of our own (others share `test`), emptied."""
    url = make_url(base_url)
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    async with admin.connect() as conn:
        exists = await conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": PG_DATABASE}
        )
        if not exists:
            await conn.execute(text(f"CREATE DATABASE {PG_DATABASE}"))
    await admin.dispose()
    own = url.set(database=PG_DATABASE).render_as_string(hide_password=False)
    engine = create_async_engine(own, poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    return own


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}"
    if not TEST_DATABASE_URL:
        pytest.skip("PostgreSQL migrations need TEST_DATABASE_URL")
    return await fresh_postgres(TEST_DATABASE_URL)


@pytest.fixture
async def engine(empty_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_async_engine(empty_url, poolclass=NullPool)
    yield created
    await created.dispose()


def schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    with warnings.catch_warnings():
        # SQLite cannot reflect expression indexes; test_case_insensitive_email_index covers it.
        warnings.filterwarnings("ignore", message=".*expression-based index")
        return list(compare_metadata(context, Base.metadata))


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def test_migrated_schema_matches_models(
    empty_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await upgrade_database(empty_url, tmp_path)
    async with engine.connect() as conn:
        assert await conn.run_sync(schema_diff) == []
        assert await conn.run_sync(current_revision) == HEAD


async def test_case_insensitive_email_index(
    empty_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await upgrade_database(empty_url, tmp_path)
    insert = text(
        "INSERT INTO users (public_id, name, email, password, email_verified, created_at) "
        "VALUES (:pid, 'A', :email, 'x', false, CURRENT_TIMESTAMP)"
    )
    async with engine.begin() as conn:
        await conn.execute(insert, {"pid": "p1", "email": "Ann@Example.com"})
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert, {"pid": "p2", "email": "ann@example.COM"})


async def test_workers_starting_together_migrate_once(
    empty_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await asyncio.gather(*(upgrade_database(empty_url, tmp_path) for _ in range(4)))
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    assert rows == [(HEAD,)]


async def test_schema_made_by_create_all_is_adopted(
    empty_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await upgrade_database(empty_url, tmp_path)
    async with engine.connect() as conn:
        assert await conn.run_sync(current_revision) == HEAD


async def test_downgrade_to_base_and_up_again(
    empty_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await upgrade_database(empty_url, tmp_path)
    await asyncio.to_thread(command.downgrade, alembic_config(empty_url), "base")
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
    assert tables <= {"alembic_version"}
    await upgrade_database(empty_url, tmp_path)
    async with engine.connect() as conn:
        assert await conn.run_sync(schema_diff) == []


async def test_app_start_migrates_the_embedded_database(tmp_path: Path) -> None:
    from quart_auth_app import create_app

    url = f"sqlite+aiosqlite:///{tmp_path / 'embedded.db'}"
    app: Quart = create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path)})
    async with app.test_app():
        response = await app.test_client().get("/healthz")
        assert response.status_code == 200
    engine = create_async_engine(url, poolclass=NullPool)
    async with engine.connect() as conn:
        assert await conn.run_sync(current_revision) == HEAD
    await engine.dispose()


def test_head_revision_constant_is_alembics_head() -> None:
    # migrate.REVISIONS lets the app check a database's revision without importing Alembic.
    from quart_auth_app.migrate import HEAD_REVISION, REVISIONS

    assert HEAD_REVISION == HEAD
    history = ScriptDirectory.from_config(alembic_config()).walk_revisions()
    assert tuple(reversed([script.revision for script in history])) == REVISIONS


async def test_a_database_at_head_is_left_alone(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    await upgrade_database(url, tmp_path)
    from quart_auth_app.migrate import _sqlite_up_to_date

    assert _sqlite_up_to_date(url)
    assert not _sqlite_up_to_date(f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}")
