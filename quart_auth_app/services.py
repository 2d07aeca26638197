"""The composition root: the long-lived objects of one running app, built from its Settings.

The only place that picks backends (database, Redis, mail) and installs speed/'s accelerations.
Everything is built when the app starts serving and closed when it stops; nothing is set on an
object after it was built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import db
from .access_tokens import UsageRecorder
from .accounts import Accounts
from .config import Settings
from .live_sockets import SocketWatch
from .mail import Mailer, build_mailer
from .mfa import SecondFactor, SecretBox
from .passwords import PasslibScheme, PasswordHasher, SchemeFactory
from .revocation import DatabaseOnly, RedisRevocationList, RevocationFeed, RevocationList
from .sessions import EngineStore, SessionService, SessionStore
from .throttle import Throttle
from .tokens import KeySet, TokenService

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass(frozen=True)
class Services:
    """Everything the edge needs besides the request itself."""

    settings: Settings
    engine: AsyncEngine
    db_sessions: async_sessionmaker[AsyncSession]
    hasher: PasswordHasher
    tokens: TokenService
    sessions: SessionService
    store: SessionStore
    throttle: Throttle
    accounts: Accounts
    redis: Redis | None
    mailer: Mailer
    sockets: SocketWatch
    # Revocations pushed to this worker's open sockets (with Redis only).
    feed: RevocationFeed | None

    async def close(self) -> None:
        """Release connections and threads (the app has stopped serving)."""
        await self.sessions.usage.idle()
        await self.store.close()
        self.hasher.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def _redis_client(url: str) -> Redis:
    # Imported only when configured: the client library adds to every worker's resident memory.
    from redis.asyncio import Redis

    return Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def password_hasher(settings: Settings) -> PasswordHasher:
    """The hasher for the configured argon2 cost (accelerated unless ACCELERATIONS=false)."""
    scheme: SchemeFactory = PasslibScheme
    if settings.accelerations:
        from . import speed

        scheme = speed.hash_scheme()
    return PasswordHasher(
        settings.argon2_memory_cost,
        settings.argon2_time_cost,
        settings.argon2_parallelism,
        settings.hash_workers,
        scheme,
    )


def _session_store(settings: Settings, engine: AsyncEngine) -> SessionStore:
    if settings.accelerations:
        from . import speed

        accelerated = speed.session_store(engine, settings.database_timeout)
        if accelerated is not None:
            return accelerated
    return EngineStore(engine, settings.database_timeout)


def _token_service(settings: Settings, keys: KeySet | None) -> TokenService:
    if settings.accelerations:
        from . import speed

        return speed.token_service(settings, keys)
    return TokenService(settings, keys)


def _revocation_list(settings: Settings, redis: Redis | None) -> RevocationList:
    if redis is None:
        return DatabaseOnly()
    if settings.accelerations:
        from . import speed

        return speed.revocation_list(redis, settings.redis_key_prefix)
    return RedisRevocationList(redis, settings.redis_key_prefix)


def open_services(settings: Settings, keys: KeySet | None = None) -> Services:
    """Build the services of one app: its engine, pools, stores and clients."""
    engine = db.create_engine(settings)
    redis = _redis_client(settings.redis_url) if settings.redis_url else None
    revocations = _revocation_list(settings, redis)
    tokens = _token_service(settings, keys)
    store = _session_store(settings, engine)
    hasher = password_hasher(settings)
    usage = UsageRecorder(engine, store.write_turn)
    sessions = SessionService(tokens, revocations, store, settings.jwt_refresh_grace_seconds, usage)
    throttle = Throttle(settings, redis)
    return Services(
        settings=settings,
        engine=engine,
        db_sessions=db.session_factory(engine),
        hasher=hasher,
        tokens=tokens,
        sessions=sessions,
        store=store,
        throttle=throttle,
        accounts=Accounts(
            hasher,
            sessions,
            throttle,
            settings.require_verified_email,
            SecondFactor(SecretBox.from_settings(settings), settings.jwt_issuer),
        ),
        redis=redis,
        mailer=build_mailer(settings),
        sockets=SocketWatch(store),
        feed=RevocationFeed(redis, settings.redis_key_prefix) if redis else None,
    )
