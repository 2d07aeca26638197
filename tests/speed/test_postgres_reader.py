"""The access check on PostgreSQL (speed/): checks that arrive together share one statement."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import create_async_engine

from quart_auth_app.models import User
from quart_auth_app.speed.postgres_reader import PostgresReader, StoreFailed
from quart_auth_app.speed.postgres_store import PostgresStore
from quart_auth_app.testing import app_services, db_session, make_user, sign_in

from ..conftest import TEST_DATABASE_URL, bearer

pytestmark = [
    pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL (PostgreSQL)"),
    pytest.mark.parametrize("backend", ["postgresql"], indirect=True),
]


def reader_of(app: Quart) -> PostgresReader:
    store = app_services(app).store
    assert isinstance(store, PostgresStore)
    return store.reader


async def session_of(app: Quart, user: User) -> tuple[str, str]:
    """(session id, public id) of a new login session of the user."""
    return (await sign_in(app, user)).session_id, user.public_id


@contextlib.asynccontextmanager
async def sessions_locked() -> AsyncIterator[None]:
    """Hold a lock that makes the next access-check read wait (a batch stays in flight)."""
    assert TEST_DATABASE_URL is not None
    engine = create_async_engine(TEST_DATABASE_URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("LOCK TABLE login_sessions IN ACCESS EXCLUSIVE MODE"))
            yield
    finally:
        await engine.dispose()


async def terminate_reader(app: Quart) -> None:
    """End the reader's server process, as a failover or an operator would."""
    async with db_session(app) as db:
        ended = await db.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE '%unnest%'"
            )
        )
        assert ended == 1


async def test_checks_that_arrive_together_each_get_their_own_answer(app: Quart) -> None:
    lookup = reader_of(app)
    ann, bob = await make_user(app, name="Ann"), await make_user(app, name="Bob", roles=["admin"])
    ann_sessions = [await session_of(app, ann) for _ in range(5)]
    bob_session = await session_of(app, bob)
    async with db_session(app) as db:
        assert await app_services(app).sessions.revoke(db, ann.id, ann_sessions[0][0])
    asks = [
        *ann_sessions,
        bob_session,
        (bob_session[0], ann.public_id),  # Bob's session presented with Ann's public id
        ("no-such-session", ann.public_id),
    ] * 3
    answers = await asyncio.gather(*(lookup.live_user(sid, public_id) for sid, public_id in asks))
    names = [None if user is None else user.name for user in answers]
    assert names == [None, "Ann", "Ann", "Ann", "Ann", "Bob", None, None] * 3
    bobs = [user for user in answers if user is not None and user.name == "Bob"]
    assert all(user.roles == {"admin"} for user in bobs)
    assert all(user.created_at.tzinfo is not None for user in answers if user is not None)


async def test_a_deactivated_user_is_refused_in_a_batch_of_live_ones(app: Quart) -> None:
    lookup = reader_of(app)
    ann, bob = await make_user(app, name="Ann"), await make_user(app, name="Bob")
    ann_session, bob_session = await session_of(app, ann), await session_of(app, bob)
    async with db_session(app) as db:
        await db.execute(update(User).where(User.id == bob.id).values(is_active=False))
        await db.commit()
    answers = await asyncio.gather(
        *(lookup.live_user(*pair) for pair in [ann_session, bob_session])
    )
    assert [None if user is None else user.name for user in answers] == ["Ann", None]


async def test_the_connection_lost_mid_batch_fails_that_batch_then_heals(app: Quart) -> None:
    lookup = reader_of(app)
    ann = await make_user(app, name="Ann")
    pairs = [await session_of(app, ann) for _ in range(3)]
    assert await lookup.live_user(*pairs[0]) is not None  # the reader's connection is open
    async with sessions_locked():
        in_flight = [asyncio.ensure_future(lookup.live_user(*pair)) for pair in pairs]
        await asyncio.sleep(0.3)  # the batch now waits for the lock
        await terminate_reader(app)
        results = await asyncio.gather(*in_flight, return_exceptions=True)
    assert all(isinstance(result, StoreFailed) for result in results), results
    assert all(isinstance(result, OSError) for result in results)  # what the edge maps to 503
    healed = await asyncio.gather(*(lookup.live_user(*pair) for pair in pairs))
    assert [user is not None for user in healed] == [True] * 3


async def test_requests_in_a_lost_batch_answer_503_never_200(app: Quart, client: Any) -> None:
    ann = await make_user(app, name="Ann")
    tokens = [await sign_in(app, ann) for _ in range(4)]
    assert (
        await client.get("/dashboard", headers=bearer(tokens[0].access_token))
    ).status_code == 200
    async with sessions_locked():
        in_flight = [
            asyncio.ensure_future(client.get("/dashboard", headers=bearer(t.access_token)))
            for t in tokens
        ]
        await asyncio.sleep(0.3)
        await terminate_reader(app)
        responses = await asyncio.gather(*in_flight)
    assert [r.status_code for r in responses] == [503] * 4
    assert all(r.headers.get("Retry-After") for r in responses)
    after = await client.get("/dashboard", headers=bearer(tokens[1].access_token))
    assert after.status_code == 200


async def test_a_stalled_read_is_bounded_by_the_database_timeout(
    app_config: dict[str, Any],
) -> None:
    from ..conftest import running_app

    app_config["DATABASE_TIMEOUT"] = "1"
    async with running_app(app_config) as app:
        ann = await make_user(app, name="Ann")
        pair = await session_of(app, ann)
        lookup = reader_of(app)
        loop = asyncio.get_running_loop()
        async with sessions_locked():
            started = loop.time()
            with pytest.raises(TimeoutError):
                await lookup.live_user(*pair)
            assert loop.time() - started < 1.5
        assert await lookup.live_user(*pair) is not None


async def test_each_pair_is_read_by_index_whatever_the_statistics(app: Quart) -> None:
    # On small, analysed tables the planner chose to scan every session per batch and hash-join
    # the pairs: right answers at the cost of a whole-table read per batch. The statement must
    # keep to point reads whatever the table sizes and statistics.
    lookup = reader_of(app)
    users = [await make_user(app) for _ in range(40)]
    pairs = [await session_of(app, users[n % 40]) for n in range(400)]
    async with db_session(app) as db:
        await db.execute(text("ANALYZE users"))
        await db.execute(text("ANALYZE login_sessions"))
        conn = await db.connection()
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        plan = await driver.fetchval(
            "EXPLAIN (FORMAT JSON) " + lookup.live_sql,
            [sid for sid, _ in pairs[:20]],
            [public_id for _, public_id in pairs[:20]],
        )
    assert "login_sessions" not in seq_scanned(plan), plan


def seq_scanned(plan: Any) -> set[str]:
    """The tables a JSON plan reads by sequential scan."""
    if isinstance(plan, list):
        return set().union(*(seq_scanned(item) for item in plan))
    if not isinstance(plan, dict):
        return set()
    found = {plan["Relation Name"]} if plan.get("Node Type") == "Seq Scan" else set()
    return found.union(*(seq_scanned(value) for value in plan.values()))
