"""Users built from driver rows: the same object User(**values) gives, without its events.

Fails loudly when SQLAlchemy's class manager (Mapper.class_manager.new_instance) changes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect
from sqlalchemy.dialects import postgresql, sqlite

from quart_auth_app.lookups import USER_COLUMNS
from quart_auth_app.models import ROLE_SEPARATOR, User
from quart_auth_app.speed.user_rows import UserRows

CREATED = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)
VALUES = {
    "role_names": ROLE_SEPARATOR.join(["admin", "support"]),
    "id": 7,
    "public_id": "1c3e6a0e-5b7e-4a53-9a1f-0d2b1f5d7c11",
    "name": "Ann",
    "email": "ann@example.com",
    "email_key": "ann@example.com",
    "password": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
    "email_verified": True,
    "created_at": CREATED,
    "is_active": True,
}


def test_the_columns_are_the_ones_the_row_carries() -> None:
    assert set(USER_COLUMNS) == set(VALUES)


def test_a_built_user_reads_as_one_made_by_its_constructor() -> None:
    rows = UserRows(postgresql.dialect())  # asyncpg hands datetimes over as they are
    built = rows.user([VALUES[name] for name in USER_COLUMNS])
    made = User(**VALUES)
    assert type(built) is User
    assert {name: getattr(built, name) for name in VALUES} == VALUES
    assert built.roles == made.roles == frozenset({"admin", "support"})
    state = inspect(built)
    assert state.transient and not state.modified  # never added to a session, nothing pending


def test_sqlite_values_are_converted_as_sqlalchemy_converts_them() -> None:
    rows = UserRows(sqlite.dialect())
    raw = {**VALUES, "created_at": "2026-12-01 12:30:00.000000", "email_verified": 1}
    user, extra = rows.split([*(raw[name] for name in USER_COLUMNS)])
    assert extra == []
    assert user.created_at == CREATED and user.email_verified is True
