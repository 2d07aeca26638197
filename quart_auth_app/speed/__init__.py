"""Opt-in accelerations, installed by services.py and web/app.py; nothing in the core imports them.

Each one stands in for a plain implementation the core has, relies on what a dependency does
not promise (named in its module, with a test in tests/speed/ that fails when it changes), and
is kept only while bench/ shows it earns its place (docs/performance.md says by how much).
`ACCELERATIONS=false` runs the plain core; the test suite runs both ways.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Quart
from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import Settings
from ..db import sqlite_file
from ..passwords import SchemeFactory
from ..revocation import RevocationList
from ..sessions import SessionStore
from ..tokens import KeySet, TokenService

if TYPE_CHECKING:
    from redis.asyncio import Redis


def session_store(engine: AsyncEngine, timeout: float) -> SessionStore | None:
    """The accelerated session store for the engine's backend: SQLite files and PostgreSQL.

    `timeout` bounds its waits for the database (DATABASE_TIMEOUT).
    """
    if engine.dialect.name == "postgresql":
        from .postgres_store import PostgresStore

        return PostgresStore(engine, timeout)
    path = sqlite_file(engine)
    if path is None:
        return None
    from .sqlite_store import SqliteStore

    return SqliteStore(engine, path, timeout)


def token_service(settings: Settings, keys: KeySet | None) -> TokenService:
    """Token verification that remembers the access tokens it has verified until they expire."""
    from .verified_tokens import RememberingTokenService

    return RememberingTokenService(settings, keys)


def revocation_list(redis: Redis, key_prefix: str) -> RevocationList:
    """The Redis revocation list with its checks batched (one MGET for those waiting together)."""
    from .redis_revocations import BatchedRevocationList

    return BatchedRevocationList(redis, key_prefix)


def hash_scheme() -> SchemeFactory:
    """argon2 in one working block per hash thread (a flat heap under login floods)."""
    from .argon2_blocks import BlockScheme

    return BlockScheme


def app_class() -> type[Quart]:
    """Quart with static routes matched from a cache (no cyclic garbage per request)."""
    from .routing import StaticRouteApp

    return StaticRouteApp


def tune_worker() -> None:
    """Keep the cyclic garbage collector off the request path (call once start-up is done)."""
    from .collector import tune_collector

    tune_collector()
