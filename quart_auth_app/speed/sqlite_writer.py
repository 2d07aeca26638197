"""Login's one write on an SQLite file: the new session and its first refresh digest.

Through the engine the two inserts cost several thread hops (begin, each statement, commit)
and the SQL compilation of each; on one core that time is taken from argon2. Here the
statements are compiled once and the whole transaction runs in one call on the writer's own
thread and connection: BEGIN IMMEDIATE (the write lock up front, waiting on busy_timeout,
never a failed read-to-write upgrade), two inserts, COMMIT.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Column, Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import DEFAULT_DATABASE_TIMEOUT
from .compiled import compiled_sql
from .sqlite_thread import SqliteThread

Row = Mapping[str, Any]


class InsertStatement:
    """An INSERT compiled for the dialect, with the bind processors and defaults of its columns."""

    def __init__(self, table: Table, engine: AsyncEngine) -> None:
        dialect = engine.dialect
        self.table = table
        self.sql, self.order = compiled_sql(insert(table), engine)
        self.processors: list[Callable[[Any], Any] | None] = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.order
        ]

    def parameters(self, row: Row) -> list[Any]:
        """Positional parameters for one row, converted as SQLAlchemy would store them."""
        values = [row[name] if name in row else _default(self.table.c[name]) for name in self.order]
        return [v if p is None else p(v) for p, v in zip(self.processors, values, strict=True)]


def _default(column: Column[Any]) -> Any:
    """The value SQLAlchemy would give a column the row leaves out (its Python-side default)."""
    default = column.default
    if default is None:
        if column.nullable:
            return None
        raise ValueError(f"no value for column {column.name}, which has no default")
    arg = getattr(default, "arg", None)
    if getattr(default, "is_callable", False):
        return arg(None)  # type: ignore[misc]  # SQLAlchemy wraps it to take a context
    return arg


def _write(conn: sqlite3.Connection, statements: list[tuple[str, list[Any]]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, parameters in statements:
            conn.execute(sql, parameters)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


class LoginWriter:
    """Inserts a login session and its refresh token in one short write transaction."""

    def __init__(
        self,
        engine: AsyncEngine,
        path: str,
        sessions: Table,
        tokens: Table,
        busy_timeout: float = DEFAULT_DATABASE_TIMEOUT,
    ) -> None:
        self.session_insert = InsertStatement(sessions, engine)
        self.token_insert = InsertStatement(tokens, engine)
        self.thread = SqliteThread(
            path, read_only=False, name="sqlite-writer", busy_timeout=busy_timeout
        )

    async def insert(self, session: Row, token: Row) -> None:
        """Store both rows, or neither (a started transaction is never cut short)."""
        statements = [
            (self.session_insert.sql, self.session_insert.parameters(session)),
            (self.token_insert.sql, self.token_insert.parameters(token)),
        ]
        await self.thread.run(_write, statements)

    async def close(self) -> None:
        await self.thread.close()
