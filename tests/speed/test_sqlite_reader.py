"""The access check on an SQLite file (speed/): checks that arrive together share one statement."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from quart_auth_app.errors import TokenInvalid
from quart_auth_app.models import LoginSession, utcnow
from quart_auth_app.speed.sqlite_reader import BatchedReader
from quart_auth_app.speed.sqlite_store import SqliteStore
from quart_auth_app.testing import app_services, db_session, make_user, sign_in

from ..conftest import SQLITE_ONLY, bearer


def reader_of(app: Quart) -> BatchedReader:
    store = app_services(app).store
    assert isinstance(store, SqliteStore)
    return store.reader


async def session_of(app: Quart, user: Any) -> tuple[str, str]:
    """(session id, public id) of a new login session of the user."""
    tokens = await sign_in(app, user)
    claims = app_services(app).tokens.verify(tokens.access_token, "access")
    return claims.session_id, claims.public_id


@SQLITE_ONLY
async def test_checks_that_arrive_together_each_get_their_own_answer(app: Quart) -> None:
    lookup = reader_of(app)
    ann, bob = await make_user(app, name="Ann"), await make_user(app, name="Bob")
    ann_sessions = [await session_of(app, ann) for _ in range(5)]
    bob_session = await session_of(app, bob)
    async with db_session(app) as db:
        assert await app_services(app).sessions.revoke(db, ann.id, ann_sessions[0][0])
        await db.commit()

    asks = [
        *ann_sessions,
        bob_session,
        (bob_session[0], ann.public_id),  # Bob's session presented with Ann's public id
        ("no-such-session", ann.public_id),
    ] * 3
    answers = await asyncio.gather(*(lookup.live_user(sid, public_id) for sid, public_id in asks))

    names = [None if user is None else user.name for user in answers]
    assert names == [None, "Ann", "Ann", "Ann", "Ann", "Bob", None, None] * 3


@SQLITE_ONLY
async def test_a_logout_is_refused_by_the_very_next_batch(app: Quart, client: Any) -> None:
    user = await make_user(app, name="Ann")
    tokens = [await sign_in(app, user) for _ in range(4)]
    responses = await asyncio.gather(
        *(client.get("/dashboard", headers=bearer(t.access_token)) for t in tokens)
    )
    assert [r.status_code for r in responses] == [200] * 4

    logout = await client.post("/logout", headers=bearer(tokens[0].access_token))
    assert logout.status_code == 200
    responses = await asyncio.gather(
        *(client.get("/dashboard", headers=bearer(t.access_token)) for t in tokens)
    )
    assert [r.status_code for r in responses] == [401, 200, 200, 200]


async def test_a_failed_read_reaches_every_waiting_check(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # a database without the tables
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    lookup = BatchedReader(engine, str(path))
    try:
        results = await asyncio.gather(
            *(lookup.live_user(f"s{i}", "p") for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
        # The next checks start a new batch rather than waiting on the failed one.
        with pytest.raises(sqlite3.OperationalError):
            await lookup.live_user("s", "p")
    finally:
        await lookup.close()
        await engine.dispose()


@SQLITE_ONLY
async def test_a_cancelled_check_leaves_the_others_answered(app: Quart) -> None:
    lookup = reader_of(app)
    user = await make_user(app, name="Ann")
    sid, public_id = await session_of(app, user)
    leaving = asyncio.ensure_future(lookup.live_user(sid, public_id))
    staying = asyncio.ensure_future(lookup.live_user(sid, public_id))
    await asyncio.sleep(0)
    leaving.cancel()
    found = await staying
    assert found is not None and found.name == "Ann"
    assert leaving.cancelled()


async def test_the_check_reads_the_committed_session_every_time(app: Quart) -> None:
    user = await make_user(app)
    tokens = await sign_in(app, user)
    sessions = app_services(app).sessions
    found, claims = await sessions.user_for_access(tokens.access_token)
    assert (found.id, found.email, claims.session_id) == (user.id, user.email, tokens.session_id)
    async with db_session(app) as db:
        # Ended in the database only: the revocation list does not know, the read must.
        await db.execute(
            update(LoginSession)
            .where(LoginSession.id == tokens.session_id)
            .values(revoked_at=utcnow())
        )
        await db.commit()
    with pytest.raises(TokenInvalid):
        await sessions.user_for_access(tokens.access_token)


@SQLITE_ONLY
async def test_a_logins_read_by_email_matches_the_core_statement(app: Quart) -> None:
    ann = await make_user(app, name="Ann", email="Ülrich@example.com")
    reader = reader_of(app)
    for given in ("Ülrich@example.com", "ülrich@EXAMPLE.com", "ÜLRICH@example.com"):
        found = await reader.user_by_email(given)
        assert found is not None and (found.id, found.email) == (ann.id, ann.email)
        assert found.created_at.tzinfo is not None  # converted as the ORM would
    assert await reader.user_by_email("nobody@example.com") is None
