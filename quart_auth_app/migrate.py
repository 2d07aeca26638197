"""Bring the database schema up to date with Alembic, once even when several workers start."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The newest revision (tests/test_migrations.py checks it is Alembic's head). A database already
# there is left alone without importing Alembic, which would add megabytes to every worker.
HEAD_REVISION = "0002"
# The first revision: databases made by create_all before migrations existed are stamped with it.
BASELINE_REVISION = "0001"
# The first revision with users.email_key: a create_all schema that has it is stamped with it.
EMAIL_KEY_REVISION = "0002"
# One advisory-lock key for every process migrating the same PostgreSQL database.
PG_LOCK_KEY = zlib.crc32(b"quart_auth_app.migrations")


class MigrationRefused(Exception):
    """A migration cannot go on until the operator decides something; the message says what."""


def alembic_config(url: str | None = None) -> Config:
    """Alembic configured in code: the migrations ship inside the package, no alembic.ini."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def ensure_schema(engine: AsyncEngine, instance_path: Path) -> None:
    """Apply pending migrations to the engine's database (the app calls this at start)."""
    await upgrade_database(engine.url.render_as_string(hide_password=False), instance_path)


async def upgrade_database(url: str, instance_path: Path) -> None:
    """Apply pending migrations; blocking work (locks, script loading) runs off the event loop."""
    await asyncio.to_thread(_upgrade_blocking, url, instance_path)


def _upgrade_blocking(url: str, instance_path: Path) -> None:
    if make_url(url).get_backend_name() == "sqlite":
        with _file_lock(_sqlite_lock_path(url, instance_path)):
            if not _sqlite_at_head(url):
                asyncio.run(_migrate(url))
    else:
        asyncio.run(_migrate(url))  # serialised by an advisory lock inside the transaction


def _sqlite_at_head(url: str) -> bool:
    """Whether an SQLite database file is already at HEAD_REVISION (read with the stdlib)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return False
    if not Path(database).is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return False
    return rows == [(HEAD_REVISION,)]


def _sqlite_lock_path(url: str, instance_path: Path) -> Path:
    """A lock file beside the database file, so every app using that file agrees on it."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        instance_path.mkdir(parents=True, exist_ok=True)
        return instance_path / "schema.lock"
    path = Path(database).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + ".migrate-lock")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def _migrate(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        _one_sqlite_transaction(engine)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Held until this transaction ends: the next worker then finds nothing to do.
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY}
                )
            await connection.run_sync(_upgrade_on)
    finally:
        await engine.dispose()


def _one_sqlite_transaction(engine: AsyncEngine) -> None:
    """The whole upgrade in one SQLite transaction, its DDL included, as on PostgreSQL.

    The sqlite3 module begins a transaction only before INSERT, UPDATE or DELETE, so a migration
    failing half-way would leave its earlier CREATE and ALTER statements applied. IMMEDIATE
    takes the write lock at once: what a migration reads cannot change before it writes.
    """
    event.listen(engine.sync_engine, "connect", _no_implicit_transactions)
    event.listen(engine.sync_engine, "begin", _begin_immediate)


def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _upgrade_on(connection: Connection) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    if _made_without_alembic(connection):
        command.stamp(config, _adopted_revision(connection))
    command.upgrade(config, "head")


def _made_without_alembic(connection: Connection) -> bool:
    """Tables exist but Alembic never ran: the schema came from an earlier create_all."""
    inspector = inspect(connection)
    return inspector.has_table("users") and not inspector.has_table("alembic_version")


def _adopted_revision(connection: Connection) -> str:
    """The revision a schema made by create_all is at: which models made it shows in users."""
    columns = {column["name"] for column in inspect(connection).get_columns("users")}
    return EMAIL_KEY_REVISION if "email_key" in columns else BASELINE_REVISION
