"""The session store on an SQLite file: batched access checks and a one-hop login write."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import DEFAULT_DATABASE_TIMEOUT
from ..lookups import DbRow, PatGrant
from ..models import User
from ..sessions import LOGIN_SESSIONS, REFRESH_TOKENS, SessionKey, WriteTurn
from .sqlite_reader import BatchedReader
from .sqlite_writer import LoginWriter


class SqliteStore:
    """sessions.SessionStore for an SQLite file, as EngineStore but with fewer hops."""

    def __init__(
        self, engine: AsyncEngine, path: str, timeout: float = DEFAULT_DATABASE_TIMEOUT
    ) -> None:
        self.reader = BatchedReader(engine, path, timeout)
        self.writer = LoginWriter(engine, path, LOGIN_SESSIONS, REFRESH_TOKENS, timeout)
        # The worker's session writes take one turn, as in EngineStore (see there why).
        self._turn = WriteTurn(timeout)

    async def live_user(self, session_id: str, public_id: str) -> User | None:
        return await self.reader.live_user(session_id, public_id)

    async def live_sessions(self, keys: Collection[SessionKey]) -> set[SessionKey]:
        # Checks that arrive together share one read: the whole set goes in one statement.
        wanted = list(keys)
        users = await asyncio.gather(*(self.reader.live_user(*key) for key in wanted))
        return {key for key, user in zip(wanted, users, strict=True) if user is not None}

    async def user_for_pat(self, digest: bytes) -> PatGrant | None:
        return await self.reader.user_for_pat(digest)

    async def user_by_email(self, email: str) -> User | None:
        return await self.reader.user_by_email(email)

    async def insert_login(self, session_row: DbRow, token_row: DbRow) -> None:
        async with self._turn:
            await self.writer.insert(session_row, token_row)

    def write_turn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._turn

    async def close(self) -> None:
        await self.reader.close()
        await self.writer.close()
