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
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from .config import reason

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Every revision, oldest first (tests/unit/test_migrations.py checks this is Alembic's history).
# The app compares a database's revision with these without importing Alembic, which would add
# megabytes to every worker: a database at the head is left alone, one behind is refused.
REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006")
HEAD_REVISION = REVISIONS[-1]
UPGRADE_COMMAND = "quart-auth-app db upgrade"
UPGRADE_HINT = f"run `{UPGRADE_COMMAND}`"
# The first revision: databases made by create_all before migrations existed are stamped with it.
BASELINE_REVISION = "0001"
# The first revision with users.email_key: a create_all schema that has it is stamped with it.
EMAIL_KEY_REVISION = "0002"
# The revision that added users.is_active and user_roles (SPEC §10).
ROLES_REVISION = "0003"
# The first revision with the second-factor tables (user_totp and the others).
SECOND_FACTOR_REVISION = "0004"
# The first revision with the mail outbox: a create_all schema that has it is stamped with it.
OUTBOX_REVISION = "0005"
# The revision that added access_tokens (personal access tokens, SPEC §10).
ACCESS_TOKENS_REVISION = "0006"
# One advisory-lock key for every process migrating the same PostgreSQL database.
PG_LOCK_KEY = zlib.crc32(b"quart_auth_app.migrations")


class SchemaProblem(Exception):
    """The schema cannot be brought up to date here; the message is one line for an operator."""


def schema_behind(found: str | None) -> bool:
    """Whether a database at revision `found` (None: no schema) needs `db upgrade` for this code.

    A revision this code does not know is newer: a rolling deploy migrates before the last old
    instance stops, and migrations keep the previous code working, so that is not "behind".
    """
    return found is None or (found in REVISIONS and found != HEAD_REVISION)


def behind_message(found: str | None) -> str:
    """The one line that says a schema is behind and what to run."""
    return (
        f"database schema is not up to date (found {found or 'none'}, need {HEAD_REVISION}):"
        f" {UPGRADE_HINT}"
    )


async def schema_revision(connection: AsyncConnection) -> str | None:
    """The database's Alembic revision, None when it has no schema (one query).

    A database that does not answer raises its error: "no schema" is said only of one that
    answered that the table is missing.
    """
    try:
        return (await connection.execute(REVISION_QUERY)).scalars().first()
    except DBAPIError as error:
        if missing_schema(error):
            return None
        raise


# SQLSTATEs of a table or a column that the code uses and the database lacks.
MISSING_SCHEMA_STATES = frozenset({"42P01", "42703"})  # undefined_table, undefined_column
SQLITE_MISSING_SCHEMA = ("no such table", "no such column")


def missing_schema(error: BaseException) -> bool:
    """Whether a database error says a table or column is missing: the schema is behind."""
    cause = getattr(error, "orig", None) or error
    if getattr(cause, "sqlstate", None) in MISSING_SCHEMA_STATES:
        return True
    return isinstance(cause, sqlite3.OperationalError) and str(cause).startswith(
        SQLITE_MISSING_SCHEMA
    )


REVISION_QUERY = text("SELECT version_num FROM alembic_version")


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
        lock = _sqlite_lock_path(url, instance_path)
        variable = "INSTANCE_PATH" if lock.parent == instance_path.resolve() else "DATABASE_URL"
        with _file_lock(lock, variable):
            if not _sqlite_up_to_date(url):
                asyncio.run(_migrate(url))
    else:
        asyncio.run(_migrate(url))  # serialised by an advisory lock inside the transaction


def _sqlite_up_to_date(url: str) -> bool:
    """Whether an SQLite database file needs no migration (read with the stdlib).

    At HEAD_REVISION, or at a newer revision than this code knows (see schema_behind).
    """
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
    return len(rows) == 1 and not schema_behind(rows[0][0])


def _sqlite_lock_path(url: str, instance_path: Path) -> Path:
    """A lock file beside the database file, so every app using that file agrees on it."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return instance_path.resolve() / "schema.lock"
    path = Path(database).resolve()
    return path.with_name(path.name + ".migrate-lock")


@contextlib.contextmanager
def _file_lock(path: Path, variable: str) -> Iterator[None]:
    try:
        # The default database's folder (the instance folder) may be new; settings refuse a
        # DATABASE_URL whose folder is missing, so no typo gets folders made for it here.
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
    except OSError as error:
        # A read-only folder: SQLite could not write its journal there either.
        raise SchemaProblem(
            f"{variable}: cannot create the migration lock {path}: {reason(error)}"
            " (the folder must be writable)"
        ) from None
    with handle:
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
    from alembic.util import CommandError

    config = alembic_config()
    config.attributes["connection"] = connection
    try:
        if _made_without_alembic(connection):
            command.stamp(config, _adopted_revision(connection))
        command.upgrade(config, "head")
    except CommandError as error:
        # E.g. a revision this version does not know: the database was migrated by a newer one.
        raise SchemaProblem(f"cannot migrate the database: {error}") from None


def _made_without_alembic(connection: Connection) -> bool:
    """Tables exist but Alembic never ran: the schema came from an earlier create_all."""
    inspector = inspect(connection)
    return inspector.has_table("users") and not inspector.has_table("alembic_version")


def _adopted_revision(connection: Connection) -> str:
    """The revision a schema made by create_all is at: which models made it shows in its tables."""
    inspector = inspect(connection)
    if inspector.has_table("access_tokens"):
        return ACCESS_TOKENS_REVISION
    if inspector.has_table("mail_outbox"):
        return OUTBOX_REVISION
    if inspector.has_table("user_totp"):
        return SECOND_FACTOR_REVISION
    columns = {column["name"] for column in inspector.get_columns("users")}
    if "is_active" in columns:
        return ROLES_REVISION
    return EMAIL_KEY_REVISION if "email_key" in columns else BASELINE_REVISION
