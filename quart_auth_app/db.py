"""The engine on the app, and one lazily opened AsyncSession per request."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from quart import Quart, g
from sqlalchemy import Insert, Select, event
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
# holds the same pages anyway: at 2 MiB each they were ~10 MB of one worker's resident memory.
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


def compiled_sql(statement: Select[Any] | Insert, engine: AsyncEngine) -> tuple[str, list[str]]:
    """SQL text and the order of its positional parameters, compiled once."""
    compiled = statement.compile(dialect=engine.dialect)
    return str(compiled), list(compiled.positiontup or [])


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
    cursor.execute("PRAGMA journal_mode=WAL")
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The sessionmaker every request draws from."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def init_app(app: Quart, settings: Settings) -> None:
    """Create the engine before serving, dispose it after, close each request's session."""

    @app.before_serving
    async def open_engine() -> None:
        engine = create_engine(settings)
        app.extensions["db_engine"] = engine
        app.extensions["db_sessions"] = session_factory(engine)

    @app.after_serving
    async def close_engine() -> None:
        engine: AsyncEngine | None = app.extensions.pop("db_engine", None)
        if engine is not None:
            await engine.dispose()

    @app.teardown_appcontext
    async def close_session(_exc: BaseException | None) -> None:
        session: AsyncSession | None = g.pop("db_session", None)
        # A session holds a connection only inside a transaction; one never used, or whose
        # last transaction ended, has nothing to give back (closing it cost ~45 µs a request).
        if session is not None and session.in_transaction():
            # Shielded: requests are no longer cancelled when clients leave (application.py),
            # but a shutdown still cancels them, and a rollback cut short leaves an SQLite
            # connection holding the write lock.
            await asyncio.shield(session.close())


def request_session() -> AsyncSession:
    """The current request's session, opened on first use."""
    session: AsyncSession | None = g.get("db_session")
    if session is None:
        from quart import current_app

        session = current_app.extensions["db_sessions"]()
        g.db_session = session
    return session


def app_engine(app: Quart) -> AsyncEngine:
    """The engine the app opened at start-up."""
    engine: AsyncEngine = app.extensions["db_engine"]
    return engine
