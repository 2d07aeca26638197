"""speed/'s precompiled statements: SQLAlchemy's compiler still gives the positional order."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from quart_auth_app.models import LoginSession, User
from quart_auth_app.sessions import LOGIN_SESSIONS
from quart_auth_app.speed.compiled import compiled_sql


async def test_positional_parameters_come_in_statement_order() -> None:
    # Relies on SQLCompiler.positiontup, which SQLAlchemy does not document: if it goes or
    # changes meaning, this fails before any login writes a column into the wrong place.
    engine = create_async_engine("sqlite+aiosqlite://")
    try:
        statement = select(User.id).where(
            User.public_id == bindparam("second"), User.email == bindparam("first")
        )
        sql, order = compiled_sql(statement, engine)
        assert order == ["second", "first"]
        assert sql.count("?") == 2
        sql, order = compiled_sql(insert(LOGIN_SESSIONS), engine)
        assert order == [column.name for column in LoginSession.__table__.columns]
    finally:
        await engine.dispose()
