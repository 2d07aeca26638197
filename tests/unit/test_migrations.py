"""SPEC §8: Alembic migrations build exactly the schema the models describe, once per start."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from quart import Quart
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from quart_auth_app.migrate import SchemaProblem, alembic_config, upgrade_database
from quart_auth_app.models import Base

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
# Emptied by these tests; a run beside others on the same server names its own.
PG_DATABASE = os.environ.get("TEST_MIGRATIONS_DATABASE", "qaa_migrations")
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


async def test_migrated_email_key_is_unique(
    empty_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await upgrade_database(empty_url, tmp_path)
    insert = text(
        "INSERT INTO users (public_id, name, email, email_key, password, email_verified, "
        "created_at) VALUES (:pid, 'A', :email, :key, 'x', false, CURRENT_TIMESTAMP)"
    )
    async with engine.begin() as conn:
        await conn.execute(
            insert, {"pid": "p1", "email": "Ülrich@example.com", "key": "ülrich@example.com"}
        )
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                insert, {"pid": "p2", "email": "ülrich@example.com", "key": "ülrich@example.com"}
            )


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


# 0002: the email lookup key ------------------------------------------------------------------

INSERT_0001_USER = text(
    "INSERT INTO users (public_id, name, email, password, email_verified, created_at) "
    "VALUES (:pid, 'A', :email, 'x', false, CURRENT_TIMESTAMP)"
)


async def at_revision(url: str, revision: str) -> None:
    await asyncio.to_thread(command.upgrade, alembic_config(url), revision)


async def insert_0001_users(engine: AsyncEngine, emails: list[str]) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            INSERT_0001_USER, [{"pid": f"p{i}", "email": email} for i, email in enumerate(emails)]
        )


async def email_keys(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT email, email_key FROM users"))).all()
    return {email: key for email, key in rows}


async def test_upgrade_gives_existing_users_their_keys(
    empty_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await at_revision(empty_url, "0001")
    many = [f"User{i}@example.com" for i in range(2100)]  # more than one batch of the fill
    await insert_0001_users(engine, ["Ülrich@example.com", "Straße@bücher.example", *many])
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO login_sessions (id, user_id, created_at, last_used_at, expires_at) "
                "VALUES ('s1', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    await upgrade_database(empty_url, tmp_path)
    keys = await email_keys(engine)
    assert keys["Ülrich@example.com"] == "ülrich@example.com"
    assert keys["Straße@bücher.example"] == "strasse@bücher.example"
    assert keys["User2099@example.com"] == "user2099@example.com"
    assert len(keys) == 2102 and all(keys[email] == email.lower() for email in many)
    async with engine.connect() as conn:
        assert await conn.run_sync(schema_diff) == []
        assert await conn.run_sync(current_revision) == HEAD
        # SQLite rebuilds the users table: the rows that point at it stay.
        sessions = (await conn.execute(text("SELECT id, user_id FROM login_sessions"))).all()
    assert [tuple(row) for row in sessions] == [("s1", 1)]


def conflicting_pairs(url: str) -> list[tuple[str, str]]:
    # Folding goes beyond lower case on both backends (ß is ss); SQLite's lower() is ASCII only.
    pairs = [("straße@example.com", "STRASSE@example.com")]
    if url.startswith("sqlite"):
        pairs.append(("Ülrich@example.com", "ülrich@example.com"))
    return pairs


async def test_accounts_sharing_a_key_stop_the_upgrade_unchanged(
    empty_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await at_revision(empty_url, "0001")
    pairs = conflicting_pairs(empty_url)
    await insert_0001_users(
        engine, ["ann@example.com", *(email for pair in pairs for email in pair)]
    )
    with pytest.raises(SchemaProblem) as refused:
        await upgrade_database(empty_url, tmp_path)
    message = str(refused.value)
    assert all(repr(email) in message for pair in pairs for email in pair)
    assert "ann@example.com" not in message and "quart-auth-app db upgrade" in message
    async with engine.connect() as conn:
        assert await conn.run_sync(current_revision) == "0001"
        columns = await conn.run_sync(
            lambda c: {col["name"] for col in inspect(c).get_columns("users")}
        )
    assert "email_key" not in columns
    with pytest.raises(IntegrityError):  # the old lower(email) index is still there
        await insert_0001_users(engine, ["ANN@example.com"])

    async with engine.begin() as conn:
        for _, second in pairs:
            await conn.execute(text("DELETE FROM users WHERE email = :email"), {"email": second})
    await upgrade_database(empty_url, tmp_path)
    assert set((await email_keys(engine)).values()) == {
        "ann@example.com",
        *(first.lower().replace("ß", "ss") for first, _ in pairs),
    }


async def test_a_long_list_of_conflicts_is_cut_short(
    empty_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await at_revision(empty_url, "0001")
    await insert_0001_users(
        engine, [f"{name}{i:02}@example.com" for i in range(12) for name in ("straße", "STRASSE")]
    )
    with pytest.raises(SchemaProblem) as refused:
        await upgrade_database(empty_url, tmp_path)
    message = str(refused.value)
    assert "12 group(s)" in message and "; and 2 more)" in message
    assert "'straße09@example.com'" in message and "straße10@example.com" not in message


async def test_schema_made_by_create_all_before_the_key_is_upgraded(
    empty_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    # What an earlier version's create_all left: the first revision's tables, no alembic_version.
    await at_revision(empty_url, "0001")
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE alembic_version"))
    await insert_0001_users(engine, ["Ülrich@example.com"])
    await upgrade_database(empty_url, tmp_path)
    assert await email_keys(engine) == {"Ülrich@example.com": "ülrich@example.com"}
    async with engine.connect() as conn:
        assert await conn.run_sync(current_revision) == HEAD


async def test_schema_made_by_create_all_before_access_tokens_gains_them(
    empty_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    # An earlier version's create_all with roles (0003) but no access_tokens, no alembic_version.
    await at_revision(empty_url, "0003")
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE alembic_version"))
    await upgrade_database(empty_url, tmp_path)
    async with engine.connect() as conn:
        assert await conn.run_sync(current_revision) == HEAD
        assert await conn.run_sync(schema_diff) == []
