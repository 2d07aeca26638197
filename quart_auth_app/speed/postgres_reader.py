"""The access check on PostgreSQL: the checks that arrive together share one statement.

Through the engine each check pays a pool checkout (and, under load, a wait for one), the ORM
layers of SQLAlchemy's asyncio adapter and a round trip; at high concurrency the checks queued
behind the pool for seconds. Here the checks waiting at one moment go in one statement,
`unnest` of their ids joined to the sessions and users (each an indexed point read), on one
connection kept for it. Nothing is cached: every answer comes from a read that began after its
request arrived, so a revocation committed anywhere is refused on the next request.

The connection is a pooled one, checked out once and held (the pool's connect arguments and
checks apply); its asyncpg connection is reached through `driver_connection`, public API.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
from sqlalchemy import String, bindparam, func, literal_column, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..faults import drops_connection, is_store_failure, sqlstate
from ..lookups import BY_EMAIL, LIVE, USER_SELECT
from ..migrate import missing_schema
from ..models import LoginSession, User
from ..rules import email_key
from .batches import Batcher
from .compiled import compiled_sql
from .user_rows import UserRows

WANTED = (
    func.unnest(
        bindparam("session_ids", type_=ARRAY(String)),
        bindparam("public_ids", type_=ARRAY(String)),
    )
    .table_valued("session_id", "public_id", with_ordinality="position")
    .render_derived(name="wanted")
)
# lookups.LIVE_USER once per pair, as a LATERAL subquery: one row per pair naming a live
# session, its position first. OFFSET 0 keeps the planner from merging it into a join, which,
# on tables whose statistics are stale or small, it did as a scan of every session per batch;
# this way each pair is two primary-key or unique-index reads whatever the statistics say.
FOUND = (
    select(*USER_SELECT)
    .join(LoginSession, LoginSession.user_id == User.id)
    .where(LoginSession.id == WANTED.c.session_id, User.public_id == WANTED.c.public_id, *LIVE)
    .offset(literal_column("0"))
    .lateral("found")
)
LIVE_USERS = select(WANTED.c.position, *FOUND.c).select_from(WANTED).join(FOUND, true())


class StoreFailed(ConnectionError):
    """A store failure on the reader's connection, as the edge knows them (an OSError).

    The driver's own error is its cause; its SQLSTATE is kept for faults.py and migrate.py.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.sqlstate = sqlstate(error)


class PostgresReader:
    """Answers live-session checks in batches, and a login's look-up, on one held connection."""

    def __init__(self, engine: AsyncEngine, timeout: float) -> None:
        self.engine = engine
        self.timeout = timeout
        self.live_sql, self.live_order = compiled_sql(LIVE_USERS, engine)
        self.email_sql, _ = compiled_sql(BY_EMAIL, engine)
        self.rows = UserRows(engine.dialect)
        self.batches: Batcher[tuple[str, str], User | None] = Batcher(self._read)
        self._held: AsyncConnection | None = None
        self._driver: Any = None
        # One statement at a time on the connection (asyncpg refuses overlapping ones).
        self._turn = asyncio.Lock()
        self._opening: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def holds_connection(self) -> bool:
        """Whether the reader has its pooled connection checked out (from its first read on)."""
        return self._held is not None

    async def live_user(self, session_id: str, public_id: str) -> User | None:
        # The whole wait is bounded, not each read: behind a stalled read, a request waits for
        # it and then for its own; past the timeout the store counts as stalled (503).
        async with asyncio.timeout(self.timeout):
            return await self.batches.ask((session_id, public_id))

    async def user_by_email(self, email: str) -> User | None:
        async with asyncio.timeout(self.timeout):
            rows = await self._fetch(self.email_sql, email_key(email))
        return self.rows.user(rows[0]) if rows else None

    async def _read(self, pairs: list[tuple[str, str]]) -> list[User | None]:
        arguments = {
            "session_ids": [session_id for session_id, _ in pairs],
            "public_ids": [public_id for _, public_id in pairs],
        }
        rows = await self._fetch(self.live_sql, *(arguments[name] for name in self.live_order))
        found = {row[0]: row[1:] for row in rows}  # ordinality counts from 1
        return [
            None if (values := found.get(position)) is None else self.rows.user(values)
            for position in range(1, len(pairs) + 1)
        ]

    async def _fetch(self, sql: str, *arguments: Any) -> list[Any]:
        async with self._turn:
            driver = await self._connection()
            try:
                rows: list[Any] = await driver.fetch(sql, *arguments, timeout=self.timeout)
            except asyncpg.InterfaceError as error:  # the connection is closed
                await self._drop()
                raise StoreFailed(error) from error
            except BaseException as error:
                if not isinstance(error, asyncpg.PostgresError) or drops_connection(error):
                    await self._drop()  # timed out, cancelled or lost: never reuse it
                if isinstance(error, asyncpg.PostgresError) and (
                    is_store_failure(error) or missing_schema(error)
                ):
                    raise StoreFailed(error) from error
                raise
            return rows

    async def _connection(self) -> Any:
        """The held connection; opened again, if it was dropped, in a task of its own.

        A connect in progress does not end when its caller is cancelled: to a stalled server
        it ran on to its own connect timeout, so a request that had waited for its turn
        answered after twice DATABASE_TIMEOUT. Its caller waits for it within its own time.
        """
        if self._driver is None or self._driver.is_closed():
            if self._opening is None or self._opening.done():
                await self._drop()
                self._opening = asyncio.create_task(self._open())
                self._opening.add_done_callback(_retrieve)
            await asyncio.shield(self._opening)
            if self._driver is None:  # it found the reader closed (the app is stopping)
                raise StoreFailed(ConnectionError("the reader is closed"))
        return self._driver

    async def _open(self) -> None:
        async with asyncio.timeout(self.timeout):
            held = await self.engine.connect()
        if self._closed:  # the app stopped while this was connecting
            await held.close()
            return
        raw = await held.get_raw_connection()
        self._held, self._driver = held, raw.driver_connection

    async def _drop(self) -> None:
        held, driver, self._held, self._driver = self._held, self._driver, None, None
        if driver is not None:
            # At once: SQLAlchemy's invalidate first tries a polite close, which waits for a
            # stalled server's answer (up to 2 s more) before it terminates.
            driver.terminate()
        if held is not None:
            with contextlib.suppress(Exception):
                await held.invalidate()
            with contextlib.suppress(Exception):
                await held.close()

    async def close(self) -> None:
        self._closed = True
        if self._opening is not None and not self._opening.done():
            with contextlib.suppress(BaseException):
                await self._opening
        held, self._held, self._driver = self._held, None, None
        if held is not None:
            with contextlib.suppress(Exception):
                await held.close()


def _retrieve(opening: asyncio.Task[None]) -> None:
    # Its callers may all have given up waiting: the failure is theirs to report, not the loop's.
    if not opening.cancelled():
        opening.exception()
