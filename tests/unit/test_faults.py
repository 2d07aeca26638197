"""faults.py: store failures (503, the connection replaced where needed) apart from code mistakes (500).

The errors are the drivers' own: raised by real SQLite connections, and asyncpg's classes as
asyncpg raises them for each SQLSTATE (the fault tests in tests/web/test_store_faults.py get
them from a real server).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import asyncpg.exceptions as pg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from quart_auth_app.faults import describe, drops_connection, is_store_failure


def sqlite_error(path: Path, sql: str, *, uri: bool = False, timeout: float = 5) -> sqlite3.Error:
    try:
        with contextlib.closing(sqlite3.connect(str(path), uri=uri, timeout=timeout)) as conn:
            conn.execute(sql)
    except sqlite3.Error as error:
        return error
    raise AssertionError(f"{sql} did not fail")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x INTEGER NOT NULL UNIQUE)")
        conn.execute("INSERT INTO t VALUES (1)")
    return path


def test_sqlite_mistakes_in_the_code_are_not_store_failures(database: Path) -> None:
    for sql in (
        "SELEC 1",
        "SELECT * FROM nowhere",
        "INSERT INTO t VALUES (1)",
        "INSERT INTO t VALUES (NULL)",
    ):
        error = sqlite_error(database, sql)
        assert not is_store_failure(error), (sql, error)


def test_sqlite_file_failures_are_store_failures_and_replace_the_connection(
    database: Path, tmp_path: Path
) -> None:
    read_only = sqlite_error(Path(f"file:{database}?mode=ro"), "INSERT INTO t VALUES (2)", uri=True)
    cannot_open = sqlite_error(tmp_path / "missing" / "app.db", "SELECT 1")
    for error in (read_only, cannot_open):
        assert is_store_failure(error) and drops_connection(error), describe(error)
    assert describe(read_only) == "OperationalError SQLITE_READONLY"


def test_sqlite_lock_held_too_long_is_a_store_failure_that_keeps_the_connection(
    database: Path,
) -> None:
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        busy = sqlite_error(database, "INSERT INTO t VALUES (3)", timeout=0)
        holder.execute("ROLLBACK")
    assert is_store_failure(busy) and not drops_connection(busy)


def test_wrapped_errors_are_judged_by_the_drivers_error(database: Path) -> None:
    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as conn, pytest.raises(DBAPIError) as mistake:
        conn.execute(text("SELEC 1"))
    engine.dispose()
    assert not is_store_failure(mistake.value)
    assert "SELEC" not in describe(mistake.value), "logs name the error, never the SQL"


@pytest.mark.parametrize(
    "error",
    [
        pg.CannotConnectNowError("the database system is starting up"),
        pg.AdminShutdownError("terminating connection due to administrator command"),
        pg.CrashShutdownError("terminating connection because of crash of another process"),
        pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        pg.QueryCanceledError("canceling statement due to statement timeout"),
        pg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        pg.DiskFullError("could not extend file: No space left on device"),
        pg.TooManyConnectionsError("sorry, too many clients already"),
        pg.PostgresIOError("could not read block"),
    ],
)
def test_postgres_server_failures_are_store_failures(error: Exception) -> None:
    assert is_store_failure(error)
    assert describe(error).endswith(f"SQLSTATE {error.sqlstate}")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "error",
    [
        pg.PostgresSyntaxError('syntax error at or near "SELEC"'),
        pg.UniqueViolationError("duplicate key value violates unique constraint"),
        pg.UndefinedColumnError('column "nope" does not exist'),
        pg.SerializationError("could not serialize access"),
        pg.DeadlockDetectedError("deadlock detected"),
    ],
)
def test_postgres_mistakes_and_conflicts_are_not_store_failures(error: Exception) -> None:
    assert not is_store_failure(error)


def test_a_standby_replaces_the_connection_and_a_cancelled_statement_does_not() -> None:
    assert drops_connection(pg.ReadOnlySQLTransactionError("read-only"))
    assert not drops_connection(pg.QueryCanceledError("canceled"))


def test_timeouts_and_refusals_are_store_failures() -> None:
    for error in (TimeoutError(), ConnectionRefusedError(), ConnectionResetError()):
        assert is_store_failure(error) and drops_connection(error)
    waited = PoolTimeout("QueuePool limit reached")
    assert is_store_failure(waited) and not drops_connection(waited)
    assert not is_store_failure(ValueError("a bug"))
