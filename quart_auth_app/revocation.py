"""Where revoked sessions are announced: the database alone, or Redis too (with TTLs).

With Redis, each revocation is also published, so every worker holding an open websocket of
the session closes it at once (RevocationFeed); the once-a-second check (live_sockets.py)
covers what a lost subscription missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from .errors import ServiceUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)
# How long a worker waits before subscribing again after losing its subscription.
RESUBSCRIBE_SECONDS = 1.0


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
        self.channel = revocation_channel(key_prefix)

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
                pipe.publish(self.channel, " ".join(ids))
                await pipe.execute()
        except self.failures as exc:
            raise ServiceUnavailable("Revocation store unavailable") from exc


def revocation_channel(key_prefix: str) -> str:
    """The pub/sub channel revocations are announced on (session ids, space separated)."""
    return f"{key_prefix}:revocations"


class RevocationFeed:
    """This worker's subscription to the announced revocations, renewed whenever it is lost."""

    def __init__(self, redis: Redis, key_prefix: str = "qaa") -> None:
        from redis.exceptions import RedisError

        self.redis = redis
        self.failures: tuple[type[Exception], ...] = (RedisError, OSError)
        self.channel = revocation_channel(key_prefix)
        self.subscribed = False

    async def run(self, deliver: Callable[[list[str]], None]) -> None:
        """Hand each announced batch of session ids to `deliver`, until cancelled."""
        while True:
            try:
                await self._listen(deliver)
            except self.failures as error:
                if self.subscribed:
                    log.warning("revocation feed lost (%s): polling until it is back", error)
                self.subscribed = False
                await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def _listen(self, deliver: Callable[[list[str]], None]) -> None:
        async with self.redis.pubsub() as pubsub:
            await pubsub.subscribe(self.channel)
            self.subscribed = True
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    deliver(bytes(message["data"]).decode("ascii", "replace").split())
