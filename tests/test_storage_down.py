"""Revocation fails closed on the database too: an unreachable database is a 503, never a 500."""

from __future__ import annotations

from typing import Any

from quart import Quart
from sqlalchemy.ext.asyncio import create_async_engine

from quart_auth_app.db import session_factory
from quart_auth_app.live_user import CoreLookup
from quart_auth_app.testing import app_services

from .conftest import bearer


async def _break_database(app: Quart, tmp_path: Any) -> None:
    # A file inside a missing folder: every connection attempt fails.
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/app.db")
    app.extensions["db_sessions"] = session_factory(engine)
    sessions = app_services(app).sessions
    if sessions.lookup is not None:
        await sessions.lookup.close()
    sessions.lookup = CoreLookup(engine)


async def test_protected_route_answers_503_when_the_database_is_down(
    app: Quart, client: Any, signed_in: Any, tmp_path: Any
) -> None:
    await _break_database(app, tmp_path)
    response = await client.get("/dashboard", headers=bearer(signed_in.tokens.access_token))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert await response.get_json() == {"message": "Service temporarily unavailable"}


async def test_login_answers_503_when_the_database_is_down(
    app: Quart, client: Any, tmp_path: Any
) -> None:
    await _break_database(app, tmp_path)
    response = await client.post("/login", json={"email": "a@example.com", "password": "whatever1"})
    assert response.status_code == 503
