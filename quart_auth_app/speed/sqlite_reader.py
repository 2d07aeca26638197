"""The access check on an SQLite file: the checks that arrive together share one read.

Every protected request asks whether its session is live. Through the engine each check costs
a pool checkout and several thread hops (cursor, execute, fetch, close, rollback on return);
here the checks waiting at one moment go in one statement on the reader's own connection, one
hop for all of them. Nothing is cached: each check reads the committed state after its request
arrived, so a logout committed by any worker is refused on the very next request.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnClause

from ..config import DEFAULT_DATABASE_TIMEOUT
from ..lookups import (
    BY_EMAIL,
    LIVE,
    PAT_COLUMNS,
    PAT_USER,
    USER_COLUMNS,
    USER_SELECT,
    PatGrant,
    pat_grant,
)
from ..models import LoginSession, User
from ..rules import email_key
from .sqlite_thread import SqliteThread, compiled_sql

# Checks waiting for the next batch read: (session id, public id) and the answer to come.
Batch = list[tuple[tuple[str, str], "asyncio.Future[User | None]"]]
# sessions.LIVE_USER for a batch: a JSON array of [session id, public id] pairs, one row per
# pair that names a live session (its index in the array first), each an indexed point read.
FIRST: ColumnClause[str] = literal_column("'$[0]'")
SECOND: ColumnClause[str] = literal_column("'$[1]'")
WANTED = func.json_each(bindparam("batch")).table_valued("key", "value").alias("wanted")
LIVE_USERS = (
    select(WANTED.c.key, *USER_SELECT)
    .select_from(WANTED)
    .join(LoginSession, LoginSession.id == func.json_extract(WANTED.c.value, FIRST))
    .join(
        User,
        and_(
            User.id == LoginSession.user_id,
            User.public_id == func.json_extract(WANTED.c.value, SECOND),
        ),
    )
    .where(*LIVE)
)


def _fetch(conn: sqlite3.Connection, sql: str, parameters: list[Any]) -> list[Any]:
    return conn.execute(sql, parameters).fetchall()


class BatchedReader:
    """Answers live-session checks in batches on one read-only connection (WAL: never blocked)."""

    def __init__(
        self, engine: AsyncEngine, path: str, busy_timeout: float = DEFAULT_DATABASE_TIMEOUT
    ) -> None:
        dialect = engine.dialect
        self.sql, self.order = compiled_sql(LIVE_USERS, engine)
        self.by_email = compiled_sql(BY_EMAIL, engine)
        self.pat_user = compiled_sql(PAT_USER, engine)
        self.processors: list[Callable[[Any], Any] | None] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in (*USER_SELECT, *PAT_COLUMNS)
        ]
        self.thread = SqliteThread(
            path, read_only=True, name="sqlite-reader", busy_timeout=busy_timeout
        )
        self._waiting: Batch = []
        self._reading: asyncio.Task[None] | None = None

    async def live_user(self, session_id: str, public_id: str) -> User | None:
        future: asyncio.Future[User | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(((session_id, public_id), future))
        if self._reading is None:
            self._reading = asyncio.create_task(self._read_batches())
        return await future

    async def user_by_email(self, email: str) -> User | None:
        """lookups.BY_EMAIL on the reader's connection: a login's read in one hop."""
        sql, order = self.by_email
        params = {"key": email_key(email)}
        rows = await self.thread.run(_fetch, sql, [params[name] for name in order])
        return self._user(rows[0]) if rows else None

    async def user_for_pat(self, digest: bytes) -> PatGrant | None:
        """lookups.PAT_USER on the reader's connection: a PAT check in one hop."""
        sql, order = self.pat_user
        params = {"digest": digest}
        rows = await self.thread.run(_fetch, sql, [params[name] for name in order])
        if not rows:
            return None
        values = self._converted(rows[0])
        split = len(USER_COLUMNS)
        return pat_grant(
            User(**dict(zip(USER_COLUMNS, values[:split], strict=True))), values[split:]
        )

    async def _read_batches(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._answer(batch)
        finally:
            self._reading = None

    async def _answer(self, batch: Batch) -> None:
        try:
            params = {"batch": json.dumps([pair for pair, _ in batch])}
            rows = await self.thread.run(_fetch, self.sql, [params[name] for name in self.order])
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        found = {row[0]: row[1:] for row in rows}
        for index, (_, future) in enumerate(batch):
            # A request cancelled while waiting has a cancelled future.
            if not future.done():
                values = found.get(index)
                future.set_result(None if values is None else self._user(values))

    def _user(self, values: Sequence[Any]) -> User:
        return User(**dict(zip(USER_COLUMNS, self._converted(values), strict=True)))

    def _converted(self, values: Sequence[Any]) -> list[Any]:
        # zip stops at the shorter: a user row has no token columns to convert.
        return [
            value if proc is None else proc(value)
            for proc, value in zip(self.processors, values, strict=False)
        ]

    async def close(self) -> None:
        await self.thread.close()
