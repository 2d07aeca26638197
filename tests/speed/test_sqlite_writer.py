"""Login's session write (speed/: a dedicated SQLite connection) stores what the ORM reads back."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from quart_auth_app.models import LoginSession, RefreshToken
from quart_auth_app.sessions import EngineStore
from quart_auth_app.speed.sqlite_store import SqliteStore
from quart_auth_app.speed.sqlite_writer import LoginWriter
from quart_auth_app.testing import DEFAULT_PASSWORD, app_services, sign_in
from quart_auth_app.tokens import token_digest

from ..conftest import SQLITE_ONLY


async def test_login_session_and_refresh_digest_read_back_through_the_orm(
    app: Any, client: Any, user: Any
) -> None:
    before = datetime.now(UTC)
    response = await client.post(
        "/login",
        json={"email": "ANN@example.com", "password": DEFAULT_PASSWORD},
        headers={"User-Agent": "x" * 400},
    )
    assert response.status_code == 200
    refresh = (await response.get_json())["refresh_token"]
    async with app_services(app).engine.connect() as conn:
        session = (await conn.execute(select(LoginSession))).one()
        token = (await conn.execute(select(RefreshToken))).one()
    assert session.user_id == user.id
    assert session.revoked_at is None
    assert before <= session.created_at <= session.expires_at
    assert session.expires_at.tzinfo is not None
    assert session.user_agent == "x" * 300
    assert token.digest == token_digest(refresh)
    assert token.session_id == session.id
    assert token.used_at is None
    # The stored times compare correctly in SQL (cleanup and listing filter on them).
    async with app_services(app).engine.connect() as conn:
        live = await conn.execute(
            select(LoginSession.id).where(LoginSession.expires_at > datetime.now(UTC))
        )
        assert live.scalars().all() == [session.id]


async def test_the_accelerated_store_serves_sqlite_files_only(app: Any, backend: str) -> None:
    store = app_services(app).store
    assert isinstance(store, SqliteStore) == (backend == "sqlite")
    assert isinstance(store, EngineStore) == (backend != "sqlite")


def writer_of(app: Any) -> LoginWriter:
    store = app_services(app).store
    assert isinstance(store, SqliteStore)
    return store.writer


def rows(user_id: int, session_id: str, digest: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    now = datetime.now(UTC)
    session = {
        "id": session_id,
        "user_id": user_id,
        "created_at": now,
        "last_used_at": now,
        "expires_at": now + timedelta(days=1),
        "revoked_at": None,
        "user_agent": None,
        "client_address": None,
    }
    token = {"digest": digest, "session_id": session_id, "expires_at": now, "used_at": None}
    return session, token


async def stored_sessions(app: Any) -> list[str]:
    async with app_services(app).engine.connect() as conn:
        return list((await conn.execute(select(LoginSession.id))).scalars())


@SQLITE_ONLY
async def test_a_failed_token_insert_leaves_no_session_behind(app: Any, user: Any) -> None:
    writer = writer_of(app)
    await writer.insert(*rows(user.id, "first", b"d" * 32))
    with pytest.raises(sqlite3.IntegrityError):  # the digest is already stored
        await writer.insert(*rows(user.id, "second", b"d" * 32))
    assert await stored_sessions(app) == ["first"]
    await writer.insert(*rows(user.id, "third", b"e" * 32))  # the connection is usable after
    assert sorted(await stored_sessions(app)) == ["first", "third"]


@SQLITE_ONLY
async def test_the_writer_waits_for_another_writer_instead_of_failing(app: Any, user: Any) -> None:
    writer = writer_of(app)
    other = sqlite3.connect(writer.thread.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock
    pending = asyncio.create_task(writer.insert(*rows(user.id, "waited", b"w" * 32)))
    await asyncio.sleep(0.3)
    assert not pending.done()
    other.execute("COMMIT")
    other.close()
    await pending
    assert await stored_sessions(app) == ["waited"]


@SQLITE_ONLY
async def test_a_cancelled_login_still_commits_the_write_it_started(app: Any, user: Any) -> None:
    writer = writer_of(app)
    other = sqlite3.connect(writer.thread.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    pending = asyncio.create_task(writer.insert(*rows(user.id, "started", b"s" * 32)))
    await asyncio.sleep(0.2)  # the writer's thread is inside BEGIN IMMEDIATE, waiting
    pending.cancel()
    other.execute("COMMIT")
    other.close()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await writer.insert(*rows(user.id, "next", b"n" * 32))  # runs after the started one
    assert sorted(await stored_sessions(app)) == ["next", "started"]


@SQLITE_ONLY
async def test_columns_a_row_leaves_out_get_their_model_defaults(app: Any, user: Any) -> None:
    session, token = rows(user.id, "defaults", b"f" * 32)
    for column in ("created_at", "last_used_at", "revoked_at", "user_agent"):
        del session[column]
    del token["used_at"]
    before = datetime.now(UTC)
    await writer_of(app).insert(session, token)
    async with app_services(app).engine.connect() as conn:
        stored = (await conn.execute(select(LoginSession))).one()
    assert before <= stored.created_at <= datetime.now(UTC)
    assert stored.last_used_at >= before
    assert stored.revoked_at is None and stored.user_agent is None


@SQLITE_ONLY
async def test_a_row_without_a_required_column_is_refused_before_any_write(
    app: Any, user: Any
) -> None:
    session, token = rows(user.id, "incomplete", b"g" * 32)
    del session["expires_at"]  # no default, not nullable
    with pytest.raises(ValueError, match="expires_at"):
        await writer_of(app).insert(session, token)
    assert await stored_sessions(app) == []


@pytest.mark.parametrize("backend", ["sqlite", "sqlite-plain"], indirect=True)
async def test_logins_and_refreshes_wait_for_the_workers_write_turn(
    app: Any, client: Any, user: Any
) -> None:
    first = await sign_in(app, user)
    turn = app_services(app).store.write_turn()
    async with turn:  # another write of this worker is under way
        login = asyncio.create_task(
            client.post("/login", json={"email": user.email, "password": DEFAULT_PASSWORD})
        )
        refresh = asyncio.create_task(
            client.post("/token/refresh", json={"refresh_token": first.refresh_token})
        )
        await asyncio.sleep(0.5)  # a login's hash is done by now (8 MiB in the tests)
        assert not login.done() and not refresh.done()
        assert len(await stored_sessions(app)) == 1  # nothing was written meanwhile
    assert (await login).status_code == 200
    assert (await refresh).status_code == 200
    assert len(await stored_sessions(app)) == 2
