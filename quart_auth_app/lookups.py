"""The two reads on the hot paths, as Core statements: a live session's user, a user by email.

Core, not the ORM: no unit of work or identity map for reads that every protected request and
every login make. Each returns a detached User that callers only read (writes are UPDATEs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from .models import LoginSession, User
from .rules import email_key

USER_COLUMNS = tuple(prop.key for prop in User.__mapper__.column_attrs)
USER_SELECT = tuple(prop.columns[0] for prop in User.__mapper__.column_attrs)
# What makes a session live, said once: the single read and the batch read both start here.
LIVE_SESSION = (
    select()
    .select_from(User)
    .join(LoginSession, LoginSession.user_id == User.id)
    .where(LoginSession.revoked_at.is_(None))
)
# The one statement that says whether a session is live, and whose user it is.
LIVE_USER = LIVE_SESSION.add_columns(*USER_SELECT).where(
    LoginSession.id == bindparam("session_id"),
    User.public_id == bindparam("public_id"),
)
# Which of many sessions are live (open websockets, checked together): (id, public id) rows.
LIVE_SESSIONS = LIVE_SESSION.add_columns(LoginSession.id, User.public_id).where(
    LoginSession.id.in_(bindparam("session_ids", expanding=True))
)


def user_from_row(row: Row[Any]) -> User:
    """A detached User from a row of the user's columns (only read; writes are UPDATEs)."""
    return User(**dict(zip(USER_COLUMNS, row, strict=True)))


async def read_live_user(
    db: AsyncConnection | AsyncSession, session_id: str, public_id: str
) -> User | None:
    """The user of an unrevoked session, read on the caller's connection or session."""
    params = {"session_id": session_id, "public_id": public_id}
    row = (await db.execute(LIVE_USER, params)).first()
    return None if row is None else user_from_row(row)


BY_EMAIL = select(*USER_SELECT).where(User.email_key == bindparam("key"))
# What a row to insert is: column name -> value.
DbRow = Mapping[str, Any]


async def find_by_email(db: AsyncSession | AsyncConnection, email: str) -> User | None:
    """The user whose email has the key of `email`, an address or a key."""
    row = (await db.execute(BY_EMAIL, {"key": email_key(email)})).first()
    return None if row is None else user_from_row(row)
