"""Login's one write on SQLite: the new session and its first refresh digest, on one connection.

Through an AsyncSession the two inserts cost about 0.4 ms of CPU per login (session begin,
greenlet bridge, three thread hops per statement, commit); on one core that time is taken
from argon2. Here the statements are compiled once and run on a dedicated aiosqlite
connection: BEGIN IMMEDIATE (the write lock up front, waiting on busy_timeout, never a failed
read-to-write upgrade), two inserts, COMMIT. A lock keeps the worker's logins from
interleaving inside one transaction; SQLite serialises writers anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import aiosqlite
from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from .db import SQLITE_PRAGMAS
from .live_user import sqlite_file

Row = Mapping[str, Any]


class InsertStatement:
    """An INSERT compiled for the dialect, with the bind processors of its columns."""

    def __init__(self, table: Table, engine: AsyncEngine) -> None:
        dialect = engine.dialect
        compiled = insert(table).compile(dialect=dialect)
        self.sql = str(compiled)
        self.order = list(compiled.positiontup or [])
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
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def insert(self, session: Row, token: Row) -> None:
        """Store both rows, or neither; a cancelled request cannot cut the transaction short."""
        await asyncio.shield(self._insert(session, token))

    async def _insert(self, session: Row, token: Row) -> None:
        async with self._lock:
            conn = self._conn or await self._open()
            await conn.execute("BEGIN IMMEDIATE")
            try:
                await conn.execute(self.session_insert.sql, self.session_insert.parameters(session))
                await conn.execute(self.token_insert.sql, self.token_insert.parameters(token))
                await conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
                raise

    async def _open(self) -> aiosqlite.Connection:
        # Opened on first use (under the lock): the schema exists by then.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in SQLITE_PRAGMAS:
            await conn.execute(pragma)
        self._conn = conn
        return conn

    async def close(self) -> None:
        """Close the connection (after serving)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def open_writer(engine: AsyncEngine, sessions: Table, tokens: Table) -> SqliteSessionWriter | None:
    """The dedicated writer on an SQLite file; None elsewhere (Core inserts on the session)."""
    path = sqlite_file(engine)
    return None if path is None else SqliteSessionWriter(engine, path, sessions, tokens)
