"""Revocation fails closed on the database too: an unreachable database is a 503, never a 500."""

from __future__ import annotations

from typing import Any

from quart import Quart

from ..conftest import bearer, services_on


def missing_database(tmp_path: Any) -> str:
    # A file inside a missing folder: every connection attempt fails.
    return f"sqlite+aiosqlite:///{tmp_path}/missing/dir/app.db"


async def test_protected_route_answers_503_when_the_database_is_down(
    app: Quart, client: Any, signed_in: Any, tmp_path: Any
) -> None:
    async with services_on(app, missing_database(tmp_path)):
        response = await client.get("/dashboard", headers=bearer(signed_in.tokens.access_token))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert await response.get_json() == {"message": "Service temporarily unavailable"}


async def test_login_answers_503_when_the_database_is_down(
    app: Quart, client: Any, tmp_path: Any
) -> None:
    async with services_on(app, missing_database(tmp_path)):
        response = await client.post(
            "/login", json={"email": "a@example.com", "password": "whatever1"}
        )
    assert response.status_code == 503
