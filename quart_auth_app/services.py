"""The long-lived objects one app owns, built from Settings and kept on the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from quart import Quart, current_app

from . import live_user
from .config import Settings
from .login_sessions import LOGIN_SESSIONS, REFRESH_TOKENS, SessionService
from .mail import Mailer, build_mailer
from .passwords import PasswordHasher
from .revocation import DatabaseOnly, RedisRevocationList, RevocationList
from .session_writer import open_writer
from .throttle import Throttle
from .tokens import TokenService

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass
class Services:
    """Everything views need besides the request and the database session."""

    settings: Settings
    hasher: PasswordHasher
    tokens: TokenService
    sessions: SessionService
    throttle: Throttle
    redis: Redis | None
    mailer: Mailer


def _redis_client(url: str) -> Redis:
    # Imported only when configured: the client library costs every worker ~5 MB resident.
    from redis.asyncio import Redis

    return Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def build_services(settings: Settings) -> Services:
    """Wire the services for one app."""
    redis = _redis_client(settings.redis_url) if settings.redis_url else None
    revocations: RevocationList = (
        RedisRevocationList(redis, settings.redis_key_prefix) if redis else DatabaseOnly()
    )
    tokens = TokenService(settings)
    hasher = PasswordHasher(
        settings.argon2_memory_cost,
        settings.argon2_time_cost,
        settings.argon2_parallelism,
        settings.hash_workers,
    )
    return Services(
        settings=settings,
        hasher=hasher,
        tokens=tokens,
        sessions=SessionService(tokens, revocations, settings.jwt_refresh_grace_seconds),
        throttle=Throttle(settings, redis),
        redis=redis,
        mailer=build_mailer(settings),
    )


def init_app(app: Quart, services: Services) -> None:
    """Keep the services on the app and release them at shutdown."""
    app.extensions["services"] = services

    @app.before_serving
    async def open_lookup() -> None:
        # Registered after db.init_app, so the engine exists by now.
        engine = app.extensions["db_engine"]
        services.sessions.lookup = live_user.open_lookup(engine)
        services.sessions.writer = open_writer(engine, LOGIN_SESSIONS, REFRESH_TOKENS)

    @app.after_serving
    async def close_services() -> None:
        lookup, services.sessions.lookup = services.sessions.lookup, None
        if lookup is not None:
            await lookup.close()
        writer, services.sessions.writer = services.sessions.writer, None
        if writer is not None:
            await writer.close()
        services.hasher.close()
        if services.redis is not None:
            await services.redis.aclose()


def services() -> Services:
    """The current app's services."""
    found: Services = current_app.extensions["services"]
    return found
