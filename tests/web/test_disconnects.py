"""A request whose client leaves still finishes its database work, and releases SQLite's lock."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import select, update

from quart_auth_app.models import User
from quart_auth_app.testing import db_session, make_user
from quart_auth_app.web.state import request_db

from ..conftest import SQLITE_ONLY


@dataclass
class SlowWrite:
    """A route that takes SQLite's write lock, then waits to be released before committing."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
def no_collector() -> Iterator[None]:
    # A leaked connection is found by the garbage collector sooner or later; the test must
    # not depend on when.
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
async def slow_write(app: Quart, no_collector: None) -> AsyncIterator[SlowWrite]:
    route = SlowWrite()

    async def rename() -> str:
        db = request_db()
        await db.execute(update(User).values(name="Renamed"))
        route.started.set()
        await route.release.wait()
        await db.commit()
        route.finished.set()
        return "done"

    app.add_url_rule("/test-slow-write", "test_slow_write", rename, methods=["POST"])
    await make_user(app, name="Ann")
    yield route


async def names(app: Quart) -> list[str]:
    async with db_session(app) as db:
        return list((await db.scalars(select(User.name))).all())


def write_lock_is_free(app: Quart) -> bool:
    path = app.extensions["settings"].database_url.split("///", 1)[1]
    connection = sqlite3.connect(path, timeout=0)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()


async def finish(app: Quart, route: SlowWrite) -> None:
    await asyncio.sleep(0.05)  # time for a wrongly cancelled request to roll back
    route.release.set()
    await asyncio.wait_for(route.finished.wait(), 5)


@SQLITE_ONLY
async def test_a_request_outlives_its_clients_disconnect_message(
    app: Quart, client: Any, slow_write: SlowWrite
) -> None:
    async with client.request("/test-slow-write", method="POST") as connection:
        await connection.send_complete()
        await slow_write.started.wait()
        await connection.disconnect()
        await finish(app, slow_write)
    assert await names(app) == ["Renamed"]
    assert write_lock_is_free(app)


@SQLITE_ONLY
async def test_a_request_outlives_the_server_cancelling_it(
    app: Quart, slow_write: SlowWrite
) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/test-slow-write", "raw_path": b"/test-slow-write",
        "query_string": b"", "root_path": "", "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "extensions": {},
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    body_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client never says more
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    serving = asyncio.ensure_future(app(scope, receive, send))
    await slow_write.started.wait()
    serving.cancel()  # what hypercorn does when it tears a connection down
    with pytest.raises(asyncio.CancelledError):
        await serving
    await finish(app, slow_write)
    assert await names(app) == ["Renamed"]
    assert write_lock_is_free(app)
    assert sent == []  # nobody to answer
