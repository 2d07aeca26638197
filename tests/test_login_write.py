"""Login's session write (SQLite: a dedicated connection) stores what the ORM reads back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from quart_auth_app.db import app_engine
from quart_auth_app.models import LoginSession, RefreshToken
from quart_auth_app.testing import DEFAULT_PASSWORD
from quart_auth_app.tokens import token_digest


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
    async with app_engine(app).connect() as conn:
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
    async with app_engine(app).connect() as conn:
        live = await conn.execute(
            select(LoginSession.id).where(LoginSession.expires_at > datetime.now(UTC))
        )
        assert live.scalars().all() == [session.id]


async def test_on_an_sqlite_file_login_writes_through_the_dedicated_connection(app: Any) -> None:
    from quart_auth_app.services import Services

    services: Services = app.extensions["services"]
    sqlite = app_engine(app).url.get_backend_name() == "sqlite"
    assert (services.sessions.writer is not None) == sqlite
