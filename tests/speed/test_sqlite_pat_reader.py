"""The SQLite store's PAT check: lookups.PAT_USER in one hop on the reader's connection,
answering as the engine store does."""

from __future__ import annotations

from datetime import timedelta

from quart import Quart
from sqlalchemy import update

from quart_auth_app.access_tokens import create
from quart_auth_app.models import AccessToken, User, utcnow
from quart_auth_app.sessions import EngineStore
from quart_auth_app.speed.sqlite_store import SqliteStore
from quart_auth_app.testing import app_services, db_session
from quart_auth_app.tokens import token_digest

from ..conftest import SQLITE_ONLY

pytestmark = SQLITE_ONLY


async def test_the_reader_finds_what_the_engine_finds(app: Quart, user: User) -> None:
    services = app_services(app)
    assert isinstance(services.store, SqliteStore)
    async with db_session(app) as db:
        made = await create(db, user, "t", frozenset({"profile:read", "sessions"}), 30)
    digest = token_digest(made.secret)
    plain = EngineStore(services.engine)
    fast = await services.store.user_for_pat(digest)
    slow = await plain.user_for_pat(digest)
    assert fast is not None and slow is not None
    assert (fast.token_id, fast.scopes, fast.expires_at) == (
        slow.token_id,
        slow.scopes,
        slow.expires_at,
    )
    assert fast.scopes == {"profile:read", "sessions"}
    assert fast.expires_at is not None and fast.expires_at.tzinfo is not None
    assert fast.user.public_id == user.public_id and fast.user.is_active
    assert await services.store.user_for_pat(token_digest("qaa_pat_unknown")) is None


async def test_the_reader_sees_a_revocation_at_once(app: Quart, user: User) -> None:
    services = app_services(app)
    async with db_session(app) as db:
        made = await create(db, user, "t", frozenset({"profile:read"}), None)
    digest = token_digest(made.secret)
    assert await services.store.user_for_pat(digest) is not None
    async with db_session(app) as db:
        await db.execute(
            update(AccessToken).where(AccessToken.id == made.row.id).values(revoked_at=utcnow())
        )
        await db.commit()
    assert await services.store.user_for_pat(digest) is None


async def test_the_reader_hands_back_the_last_use(app: Quart, user: User) -> None:
    services = app_services(app)
    used = utcnow() - timedelta(minutes=5)
    async with db_session(app) as db:
        made = await create(db, user, "t", frozenset({"profile:read"}), None)
        await db.execute(
            update(AccessToken).where(AccessToken.id == made.row.id).values(last_used_at=used)
        )
        await db.commit()
    found = await services.store.user_for_pat(token_digest(made.secret))
    assert found is not None and found.last_used_at == used
