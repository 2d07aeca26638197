"""The access check on an SQLite file: the checks that arrive together share one read.

Every protected request asks whether its session is live. Through the engine each check costs
a pool checkout and several thread hops (cursor, execute, fetch, close, rollback on return);
here the checks waiting at one moment go in one statement on the reader's own connection, one
hop for all of them. Nothing is cached: each check reads the committed state after its request
arrived, so a logout committed by any worker is refused on the very next request.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from sqlalchemy import and_, bindparam, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnClause

from ..config import DEFAULT_DATABASE_TIMEOUT
from ..lookups import BY_EMAIL, LIVE, PAT_COLUMNS, PAT_USER, USER_SELECT, PatGrant, pat_grant
from ..models import LoginSession, User
from ..rules import email_key
from .batches import Batcher
from .compiled import compiled_sql
from .sqlite_thread import SqliteThread
from .user_rows import UserRows

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
        self.sql, self.order = compiled_sql(LIVE_USERS, engine)
        self.by_email = compiled_sql(BY_EMAIL, engine)
        self.pat_user = compiled_sql(PAT_USER, engine)
        self.rows = UserRows(engine.dialect)
        self.pat_rows = UserRows(engine.dialect, PAT_COLUMNS)
        self.thread = SqliteThread(
            path, read_only=True, name="sqlite-reader", busy_timeout=busy_timeout
        )
        self.batches: Batcher[tuple[str, str], User | None] = Batcher(self._read)

    async def live_user(self, session_id: str, public_id: str) -> User | None:
        return await self.batches.ask((session_id, public_id))

    async def user_by_email(self, email: str) -> User | None:
        """lookups.BY_EMAIL on the reader's connection: a login's read in one hop."""
        sql, order = self.by_email
        params = {"key": email_key(email)}
        rows = await self.thread.run(_fetch, sql, [params[name] for name in order])
        return self.rows.user(rows[0]) if rows else None

    async def _read(self, pairs: list[tuple[str, str]]) -> list[User | None]:
        params = {"batch": json.dumps(pairs)}
        rows = await self.thread.run(_fetch, self.sql, [params[name] for name in self.order])
        found = {row[0]: row[1:] for row in rows}
        return [
            None if (values := found.get(index)) is None else self.rows.user(values)
            for index in range(len(pairs))
        ]

    async def user_for_pat(self, digest: bytes) -> PatGrant | None:
        """lookups.PAT_USER on the reader's connection: a PAT check in one hop."""
        sql, order = self.pat_user
        params = {"digest": digest}
        rows = await self.thread.run(_fetch, sql, [params[name] for name in order])
        if not rows:
            return None
        user, token_columns = self.pat_rows.split(rows[0])
        return pat_grant(user, token_columns)

    async def close(self) -> None:
        await self.thread.close()
