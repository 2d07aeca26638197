"""The engine: tuned per backend, the SQLite connection settings, and the session factory."""

from __future__ import annotations

import errno
import os
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError, InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .config import DEFAULT_DATABASE_TIMEOUT, Settings
from .faults import drops_connection

# Page cache per SQLite connection (SQLite's default is 2 MiB). A worker keeps up to seven
# connections (the pool, the login writer, the access-check reader) and the OS page cache
# holds the same pages anyway: at 2 MiB each they added up in every worker's resident memory.
SQLITE_CACHE_KIB = 512
# Marks, in a pooled connection's record, that SQLite may have opened it read-only.
OPENED_READ_ONLY = "opened_read_only"
# Marks a pooled PostgreSQL connection not checked out yet since it was opened.
FRESH = "fresh"
# Every connection the app opens to SQLite: the pool's, the login writer's, the reader's
# (besides busy_timeout, which is DATABASE_TIMEOUT).
SQLITE_PRAGMAS = (
    f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)


def is_sqlite(url: str) -> bool:
    """Whether the URL names an SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The SQLite database file a second connection may open, or None (other backends)."""
    url = make_url(engine.url)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and not _in_memory(database, url.query):
        return str(Path(database))
    return None


def _in_memory(database: str, query: Any) -> bool:
    # A second connection to an in-memory database would see another, empty database.
    return database == ":memory:" or database.startswith("file:") or "mode" in query


def create_engine(settings: Settings) -> AsyncEngine:
    """An engine tuned for the configured backend; no wait for the database outlasts the timeout."""
    if is_sqlite(settings.database_url):
        engine = _sqlite_engine(settings.database_url, settings.database_timeout)
    else:
        engine = _postgres_engine(settings)
    event.listen(engine.sync_engine, "handle_error", _replace_failed_connection)
    return engine


def _postgres_engine(settings: Settings) -> AsyncEngine:
    timeout = settings.database_timeout
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_timeout=timeout,  # waiting for a free connection
        pool_recycle=1800,
        connect_args={
            **asyncpg_arguments(settings.database_statement_cache_size),
            "timeout": timeout,  # connecting, from TCP to authentication
            "command_timeout": timeout,  # every statement, BEGIN, COMMIT and ROLLBACK
        },
    )
    event.listen(engine.sync_engine.pool, "connect", _fresh)
    event.listen(engine.sync_engine.pool, "checkout", _ping)
    event.listen(engine.sync_engine, "invalidate", _abort_unanswered)
    return engine


def _sqlite_engine(url: str, timeout: float) -> AsyncEngine:
    # SQLite's busy wait (for the write lock another connection holds) is how it stalls, so it
    # ends after DATABASE_TIMEOUT like every other wait for the store: 503 rather than a queue
    # of requests each waiting longer. Transactions here last milliseconds; a lock held for
    # seconds is a stuck process, a backup or a VACUUM, not load.
    database = make_url(url).database or ":memory:"
    engine: AsyncEngine
    if database == ":memory:":  # SQLAlchemy's own pool: one connection, one database
        engine = create_async_engine(url, connect_args={"timeout": timeout})
    else:
        # SQLite writes one at a time: connections beyond a few only add threads and page
        # caches (memory), never throughput.
        engine = create_async_engine(
            url,
            connect_args={"timeout": timeout},
            pool_size=5,
            max_overflow=0,
            pool_timeout=timeout,
        )
        path = sqlite_file(engine)
        if path is not None:
            _replace_read_only_connections(engine, path)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas(timeout))
    return engine


def asyncpg_arguments(cache_size: int) -> dict[str, Any]:
    """Statement caching for asyncpg; 0 suits pgbouncer in transaction (or statement) mode."""
    arguments: dict[str, Any] = {
        "statement_cache_size": cache_size,  # asyncpg's own cache
        "prepared_statement_cache_size": cache_size,  # SQLAlchemy's cache on top of it
    }
    if cache_size == 0:
        # Behind a pooler one server connection serves many clients: asyncpg's numbered
        # statement names would collide there, unique ones cannot.
        arguments["prepared_statement_name_func"] = _unique_statement_name
    return arguments


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def _sqlite_pragmas(busy_timeout: float) -> Callable[[Any, Any], None]:
    def configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # the file's mode: set once, kept by the file
        apply_pragmas(cursor, busy_timeout=busy_timeout)
        cursor.close()

    return configure


def _replace_read_only_connections(engine: AsyncEngine, path: str) -> None:
    """Replace, once the file is writable again, a pooled connection opened while it was not.

    SQLite opens a file it cannot write read-only without a word, and the connection stays
    read-only for good: every write on it would fail until a restart. Such a connection still
    serves reads, so it is kept until a checkout finds the file writable.
    """

    def before_connect(_dialect: Any, record: Any, *_args: Any) -> None:
        # Checked before opening: a file made read-only meanwhile is caught at the first write.
        record.info[OPENED_READ_ONLY] = not writable(path)

    def on_checkout(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.get(OPENED_READ_ONLY) and writable(path):
            raise DisconnectionError("opened while the SQLite file was read-only")  # reconnects

    event.listen(engine.sync_engine, "do_connect", before_connect)
    event.listen(engine.sync_engine.pool, "checkout", on_checkout)


def _replace_failed_connection(context: ExceptionContext) -> None:
    """Have SQLAlchemy discard a connection a store failure left unusable (faults.py says which)."""
    if not context.is_disconnect and drops_connection(context.original_exception):
        context.is_disconnect = True
        # The other pooled connections may be fine: each is replaced at its own failure.
        context.invalidate_pool_on_disconnect = False


def _fresh(_dbapi_connection: Any, record: Any) -> None:
    record.info[FRESH] = True


def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Check a pooled PostgreSQL connection before use, within one statement timeout.

    SQLAlchemy's pool_pre_ping does the same in a transaction, whose ROLLBACK waits a second
    timeout when the server stalls mid-check. A connection the server closed (a restart)
    is replaced, and so is every connection pooled before it; a stalled server answers 503.
    """
    if record.info.pop(FRESH, False):
        return  # just opened: it answered already
    try:
        # The simple query protocol: no prepared statement, so poolers in transaction mode agree.
        dbapi_connection.run_async(lambda driver: driver.execute("SELECT 1"))
    except TimeoutError:
        raise
    except Exception as error:
        raise InvalidatePoolError("connection lost") from error  # the pool reconnects


def _abort_unanswered(dbapi_connection: Any, _record: Any, error: BaseException | None) -> None:
    """Drop an asyncpg connection at once when it is discarded because the server stopped answering.

    SQLAlchemy closes a discarded connection politely, and asyncpg's close first waits for the
    server to confirm the cancel of a timed-out statement: a stalled server never does, and the
    request that discards the connection would wait with it.
    """
    if isinstance(error, OSError) and dbapi_connection is not None:
        dbapi_connection.driver_connection.terminate()


def writable(path: str) -> bool:
    """Whether this process may write the SQLite database file, its WAL and their folder."""
    database = Path(path)
    # A database or WAL file that does not exist yet is created in the folder.
    targets = {found if found.exists() else database.parent for found in (database, wal_of(path))}
    return all(
        os.access(target, os.W_OK, effective_ids=True) for target in targets if target.exists()
    )


def check_writable(path: str) -> None:
    """PermissionError (a 503) unless this process may write the SQLite file (see writable)."""
    if not writable(path):
        raise PermissionError(errno.EACCES, "the SQLite database is not writable", path)


def wal_of(path: str) -> Path:
    """The write-ahead log beside an SQLite database file."""
    return Path(f"{path}-wal")


def apply_pragmas(
    target: Any, *, busy_timeout: float = DEFAULT_DATABASE_TIMEOUT, read_only: bool = False
) -> None:
    """Give a connection (or cursor) the settings every SQLite connection of the app has."""
    busy = f"PRAGMA busy_timeout={int(busy_timeout * 1000)}"
    for pragma in (busy, *SQLITE_PRAGMAS, *(("PRAGMA query_only=ON",) if read_only else ())):
        target.execute(pragma)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The sessionmaker every request draws from."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def open_sqlite(
    path: str, *, read_only: bool = False, busy_timeout: float = DEFAULT_DATABASE_TIMEOUT
) -> sqlite3.Connection:
    """A plain sqlite3 connection in autocommit mode with the app's pragmas (WAL is the file's).

    A connection that will write is refused while the file cannot be written: SQLite would
    open it read-only, and it would stay so once the file is writable again.
    """
    if not read_only:
        check_writable(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        apply_pragmas(conn, busy_timeout=busy_timeout, read_only=read_only)
    except BaseException:
        conn.close()
        raise
    return conn
