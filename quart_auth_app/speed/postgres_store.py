"""The session store on PostgreSQL: EngineStore with its two hot reads batched on one connection."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from ..models import User
from ..sessions import EngineStore
from .postgres_reader import PostgresReader


class PostgresStore(EngineStore):
    """sessions.SessionStore for PostgreSQL: the access check and a login's look-up skip the pool."""

    def __init__(self, engine: AsyncEngine, timeout: float) -> None:
        super().__init__(engine, timeout)
        self.reader = PostgresReader(engine, timeout)

    async def live_user(self, session_id: str, public_id: str) -> User | None:
        return await self.reader.live_user(session_id, public_id)

    async def user_by_email(self, email: str) -> User | None:
        return await self.reader.user_by_email(email)

    async def close(self) -> None:
        await self.reader.close()
        await super().close()
