"""Where revoked sessions are announced: the database alone, or Redis too (with TTLs)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from .errors import ServiceUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis


class RevocationList(Protocol):
    """Revoked session ids, shared by every worker and instance."""

    async def is_revoked(self, session_id: str) -> bool: ...

    async def revoke(self, session_ids: Iterable[str], ttl: timedelta) -> None: ...


class DatabaseOnly:
    """Revocation lives in the login_sessions table, which every check already reads."""

    async def is_revoked(self, session_id: str) -> bool:
        return False

    async def revoke(self, session_ids: Iterable[str], ttl: timedelta) -> None:
        return None


class RedisRevocationList:
    """Revoked session ids as Redis keys that expire with the longest token they could cover."""

    def __init__(self, redis: Redis, key_prefix: str = "qaa") -> None:
        from redis.exceptions import RedisError  # only deployments with Redis load the client

        self.redis = redis
        self.failures: tuple[type[Exception], ...] = (RedisError, OSError)
        # One Redis may serve several deployments (or test runs): each keeps to its prefix.
        self.prefix = f"{key_prefix}:revoked:"

    async def is_revoked(self, session_id: str) -> bool:
        try:
            return bool(await self.redis.exists(self.prefix + session_id))
        except self.failures as exc:
            # Fail closed: an unreachable revocation store never means "not revoked".
            raise ServiceUnavailable("Revocation store unavailable") from exc

    async def revoke(self, session_ids: Iterable[str], ttl: timedelta) -> None:
        ids = list(session_ids)
        if not ids:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for session_id in ids:
                    pipe.set(self.prefix + session_id, b"1", ex=ttl)
                await pipe.execute()
        except self.failures as exc:
            raise ServiceUnavailable("Revocation store unavailable") from exc
