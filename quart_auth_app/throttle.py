"""Login and signup throttling (SPEC §7) on `limits`: memory by default, Redis when configured."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from .config import Settings
from .errors import ServiceUnavailable, Throttled

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")


def _key(*parts: str) -> str:
    # Emails are hashed so counters in Redis never hold addresses in clear.
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


# Mails per address and purpose in 30 minutes: caps how much mail anyone can aim at one inbox.
MAIL_LIMIT = RateLimitItemPerSecond(3, 1800)


class Throttle:
    """Per-address attempt limits and per-(email, address) failed-login limits."""

    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        self.enabled = settings.rate_limit_enabled
        self.storage = _storage(redis, settings.redis_key_prefix)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.attempts: RateLimitItem = RateLimitItemPerMinute(settings.auth_attempts_per_minute)
        self.failures: RateLimitItem = RateLimitItemPerSecond(
            settings.login_failures_per_window, settings.login_failure_window_seconds
        )

    async def attempt(self, scope: str, address: str) -> None:
        """Count one login/signup-type attempt from an address; 429 past the limit."""
        if self.enabled and not await self._call(
            self.limiter.hit(self.attempts, "attempt", address)
        ):
            raise Throttled(await self._retry_after(self.attempts, "attempt", address))

    async def check_failures(self, email: str, address: str) -> None:
        """429 if this (email, address) pair has used up its failed logins."""
        if not self.enabled:
            return
        key = _key(email.lower(), address)
        if not await self._call(self.limiter.test(self.failures, "fail", key)):
            raise Throttled(await self._retry_after(self.failures, "fail", key))

    async def record_failure(self, email: str, address: str) -> None:
        """Count one failed login for the pair."""
        if self.enabled:
            await self._call(self.limiter.hit(self.failures, "fail", _key(email.lower(), address)))

    async def clear_failures(self, email: str, address: str) -> None:
        """Forget the pair's failures after a successful login."""
        if self.enabled:
            await self._call(
                self.limiter.clear(self.failures, "fail", _key(email.lower(), address))
            )

    async def mail_allowed(self, purpose: str, email: str) -> bool:
        """Count one mail of this purpose to this address; False past MAIL_LIMIT."""
        if not self.enabled:
            return True
        return await self._call(self.limiter.hit(MAIL_LIMIT, "mail", _key(purpose, email.lower())))

    async def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = await self._call(self.limiter.get_window_stats(item, *identifiers))
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (StorageError, OSError, ConnectionError) as exc:
            # Never silently unthrottled: an unreachable counter store refuses the attempt.
            raise ServiceUnavailable("Rate-limit store unavailable") from exc


def _storage(redis: Redis | None, key_prefix: str) -> Storage:
    if redis is None:
        return MemoryStorage()
    # Counters share the app's Redis pool (its timeouts, one shutdown) instead of opening another.
    return RedisStorage(
        "async+redis://",
        wrap_exceptions=True,
        implementation="redispy",
        key_prefix=key_prefix,
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]
    )
