"""The access check's database read (the user behind a live login session), and login's.

Every protected request runs this query, so it skips the ORM session (unit of work, identity
map, pool checkout and a greenlet hop per driver call). On SQLite it runs on a dedicated
aiosqlite connection, and the checks of requests that arrive together share one statement and
one thread hop: an AsyncSession paid about five hops per request (cursor, execute, fetch,
close, rollback on return), and under load the hop itself was the costliest part of the read.
Nothing is cached: each check reads the committed state after its request arrived, so a logout
committed by any worker is refused on the very next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import aiosqlite
from sqlalchemy import and_, bindparam, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.sql.elements import ColumnClause, NamedColumn

from .db import SQLITE_PRAGMAS, compiled_sql, sqlite_file
from .models import LoginSession, User

# Checks waiting for the next batch read: (session id, public id) and the answer to come.
Batch = list[tuple[tuple[str, str], "asyncio.Future[User | None]"]]
# (attribute, column) of every mapped User column: the row becomes a detached User.
USER_FIELDS: tuple[tuple[str, NamedColumn[Any]], ...] = tuple(
    (prop.key, prop.columns[0]) for prop in User.__mapper__.column_attrs
)
USER_KEYS = tuple(key for key, _ in USER_FIELDS)
NEW_USER = User.__mapper__.class_manager.new_instance
LIVE_USER = (
    select(*(column for _, column in USER_FIELDS))
    .join(LoginSession, LoginSession.user_id == User.id)
    .where(
        LoginSession.id == bindparam("session_id"),
        LoginSession.revoked_at.is_(None),
        User.public_id == bindparam("public_id"),
    )
)
# The same check for a batch: a JSON array of [session id, public id] pairs, one row per pair
# that names a live session (its index in the array first), each an indexed point read.
FIRST: ColumnClause[str] = literal_column("'$[0]'")
SECOND: ColumnClause[str] = literal_column("'$[1]'")
WANTED = func.json_each(bindparam("batch")).table_valued("key", "value").alias("wanted")
LIVE_USERS = (
    select(WANTED.c.key, *(column for _, column in USER_FIELDS))
    .select_from(WANTED)
    .join(LoginSession, LoginSession.id == func.json_extract(WANTED.c.value, FIRST))
    .join(
        User,
        and_(
            User.id == LoginSession.user_id,
            User.public_id == func.json_extract(WANTED.c.value, SECOND),
        ),
    )
    .where(LoginSession.revoked_at.is_(None))
)
# The login's lookup, by the same Core path: no ORM session, commit or identity map.
BY_EMAIL = select(*(column for _, column in USER_FIELDS)).where(
    func.lower(User.email) == bindparam("email")
)


class LiveUserLookup(Protocol):
    """Finds the user of an unrevoked session, or None."""

    async def find(self, session_id: str, public_id: str) -> User | None: ...

    async def find_by_email(self, email: str) -> User | None:
        """The user with this email (compared lower-cased), or None."""
        ...

    async def close(self) -> None: ...


def _user(values: Sequence[Any]) -> User:
    # Built the way the ORM builds an object it loads (a new instance, its values put in
    # place): User(**values) fires an attribute event per column and cost the access check
    # ~10 µs hot, ~80 µs in a lone login. The object stays transient: nothing adds it to a
    # session, and callers only read it (users.py writes with UPDATE statements).
    user: User = NEW_USER()
    user.__dict__.update(zip(USER_KEYS, values, strict=True))
    return user


async def read_live_user(
    db: AsyncConnection | AsyncSession, session_id: str, public_id: str
) -> User | None:
    """The user of an unrevoked session, read on the caller's connection or session."""
    params = {"session_id": session_id, "public_id": public_id}
    row = (await db.execute(LIVE_USER, params)).first()
    return None if row is None else _user(row)


class CoreLookup:
    """Any backend: the Core statement on a pooled connection, no ORM session."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def find(self, session_id: str, public_id: str) -> User | None:
        async with self.engine.connect() as conn:
            return await read_live_user(conn, session_id, public_id)

    async def find_by_email(self, email: str) -> User | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(BY_EMAIL, {"email": email.lower()})).first()
        return None if row is None else _user(row)

    async def close(self) -> None:
        return None


class SqliteLookup:
    """SQLite: the statements compiled once, run on one autocommit aiosqlite connection.

    SQLite answers these indexed point reads in microseconds, so one connection (one thread)
    serves every request of the worker; WAL lets it read while others write. Checks wait in
    `_waiting` while a batch is being read, and go together in the next one.
    """

    def __init__(self, engine: AsyncEngine, path: str) -> None:
        dialect = engine.dialect
        self.live = compiled_sql(LIVE_USERS, engine)
        self.by_email = compiled_sql(BY_EMAIL, engine)
        processors = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                      for _, column in USER_FIELDS]  # fmt: skip
        self.processors: list[Callable[[Any], Any] | None] = list(processors)
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._opening = asyncio.Lock()
        self._waiting: Batch = []
        self._reader: asyncio.Task[None] | None = None

    async def find(self, session_id: str, public_id: str) -> User | None:
        future: asyncio.Future[User | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(((session_id, public_id), future))
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_batches())
        return await future

    async def find_by_email(self, email: str) -> User | None:
        conn = self._conn or await self._open()
        sql, order = self.by_email
        params = {"email": email.lower()}
        rows = list(await conn.execute_fetchall(sql, [params[name] for name in order]))
        return self._processed_user(rows[0]) if rows else None

    async def _read_batches(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._answer(batch)
        finally:
            self._reader = None

    async def _answer(self, batch: Batch) -> None:
        try:
            conn = self._conn or await self._open()
            params = {"batch": json.dumps([pair for pair, _ in batch])}
            sql, order = self.live
            rows = await conn.execute_fetchall(sql, [params[name] for name in order])
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        found = {row[0]: row[1:] for row in rows}
        for index, (_, future) in enumerate(batch):
            # A request cancelled while waiting (its client left) has a cancelled future.
            if not future.done():
                values = found.get(index)
                future.set_result(None if values is None else self._processed_user(values))

    def _processed_user(self, values: Sequence[Any]) -> User:
        return _user(
            [
                value if proc is None else proc(value)
                for proc, value in zip(self.processors, values, strict=True)
            ]
        )

    async def _open(self) -> aiosqlite.Connection:
        # Opened on first use: the schema (and the database file) exist by then.
        async with self._opening:
            if self._conn is None:
                conn = await aiosqlite.connect(self.path, isolation_level=None)
                for pragma in (*SQLITE_PRAGMAS, "PRAGMA query_only=ON"):
                    await conn.execute(pragma)
                self._conn = conn
            return self._conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def open_lookup(engine: AsyncEngine) -> LiveUserLookup:
    """The fastest lookup the engine's backend allows."""
    path = sqlite_file(engine)
    return CoreLookup(engine) if path is None else SqliteLookup(engine, path)
