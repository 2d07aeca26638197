"""Login's one write on SQLite: the new session and its first refresh digest, on one connection.

Through an AsyncSession the two inserts cost about 0.4 ms of CPU per login (session begin,
greenlet bridge, three thread hops per statement, commit); on one core that time is taken
from argon2. Here the statements are compiled once and the whole transaction runs in one call
on the writer's own thread and connection: BEGIN IMMEDIATE (the write lock up front, waiting
on busy_timeout, never a failed read-to-write upgrade), two inserts, COMMIT. One hop from the
event loop per login (an aiosqlite connection took four).

`turn` gives the worker's writes to SQLite one at a time, in arrival order: login's here and
refresh's rotation (login_sessions.py). SQLite lets one connection write; others retry in its
busy handler, which sleeps 1, 2, 5 … 100 ms between tries, so under load a few writers starved
for seconds while others came and went (bench/: refresh at c = 16 had a p99 of 1.3 s and wrk
timeouts; with the turn, 162 ms and none). Another process still meets the busy handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from .db import SQLITE_PRAGMAS, compiled_sql, sqlite_file

Row = Mapping[str, Any]


class InsertStatement:
    """An INSERT compiled for the dialect, with the bind processors of its columns."""

    def __init__(self, table: Table, engine: AsyncEngine) -> None:
        dialect = engine.dialect
        self.sql, self.order = compiled_sql(insert(table), engine)
        self.processors: list[Callable[[Any], Any] | None] = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.order
        ]

    def parameters(self, row: Row) -> list[Any]:
        """Positional parameters for one row, converted as SQLAlchemy would store them."""
        values = [row[name] for name in self.order]
        return [v if p is None else p(v) for p, v in zip(self.processors, values, strict=True)]


class SqliteSessionWriter:
    """Inserts a login session and its refresh token in one short write transaction."""

    def __init__(self, engine: AsyncEngine, path: str, sessions: Table, tokens: Table) -> None:
        self.session_insert = InsertStatement(sessions, engine)
        self.token_insert = InsertStatement(tokens, engine)
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self.turn = asyncio.Lock()
        self._conn: sqlite3.Connection | None = None  # used on self._thread only

    async def insert(self, session: Row, token: Row) -> None:
        """Store both rows, or neither.

        A cancelled request cannot cut the transaction short: once the thread has started it,
        it runs to its end; one not yet started is dropped whole.
        """
        parameters = (self.session_insert.parameters(session), self.token_insert.parameters(token))
        async with self.turn:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._write, *parameters)

    def _write(self, session: list[Any], token: list[Any]) -> None:
        conn = self._conn or self._open()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(self.session_insert.sql, session)
            conn.execute(self.token_insert.sql, token)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _open(self) -> sqlite3.Connection:
        # Opened on first use, in the writer's thread: the schema exists by then.
        conn = sqlite3.connect(self.path, isolation_level=None)
        for pragma in SQLITE_PRAGMAS:
            conn.execute(pragma)
        self._conn = conn
        return conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        """Close the connection (after serving) and stop the thread."""
        with contextlib.suppress(Exception):
            await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=False)


def open_writer(engine: AsyncEngine, sessions: Table, tokens: Table) -> SqliteSessionWriter | None:
    """The dedicated writer on an SQLite file; None elsewhere (Core inserts on the session)."""
    path = sqlite_file(engine)
    return None if path is None else SqliteSessionWriter(engine, path, sessions, tokens)
