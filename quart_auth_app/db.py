"""The engine: tuned per backend, the SQLite connection settings, and the session factory."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .config import Settings

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Page cache per SQLite connection (SQLite's default is 2 MiB). A worker keeps up to seven
# connections (the pool, the login writer, the access-check reader) and the OS page cache
# holds the same pages anyway: at 2 MiB each they added up in every worker's resident memory.
SQLITE_CACHE_KIB = 512
# Every connection the app opens to SQLite: the pool's, the login writer's, the reader's.
SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
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
    """An engine tuned for the configured backend."""
    url = settings.database_url
    if is_sqlite(url):
        # SQLite writes one at a time: connections beyond a few only add threads and page
        # caches (memory), never throughput. In-memory databases keep SQLAlchemy's own pool.
        database = make_url(url).database or ":memory:"
        pooling = {} if database == ":memory:" else {"pool_size": 5, "max_overflow": 0}
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **pooling
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=asyncpg_arguments(settings.database_statement_cache_size),
    )


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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # the file's mode: set once, kept by the file
    apply_pragmas(cursor)
    cursor.close()


def apply_pragmas(target: Any, *, read_only: bool = False) -> None:
    """Give a connection (or cursor) the settings every SQLite connection of the app has."""
    for pragma in (*SQLITE_PRAGMAS, *(("PRAGMA query_only=ON",) if read_only else ())):
        target.execute(pragma)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The sessionmaker every request draws from."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def open_sqlite(path: str, *, read_only: bool = False) -> sqlite3.Connection:
    """A plain sqlite3 connection in autocommit mode with the app's pragmas (WAL is the file's)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    apply_pragmas(conn, read_only=read_only)
    return conn
