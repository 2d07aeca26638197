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

# Every column of a user, its current roles (User.role_names) and is_active among them.
USER_COLUMNS = tuple(prop.key for prop in User.__mapper__.column_attrs)
USER_SELECT = tuple(prop.columns[0] for prop in User.__mapper__.column_attrs)
# What makes a session live beyond naming it: not revoked, and its account not deactivated.
LIVE = (LoginSession.revoked_at.is_(None), User.is_active.is_(True))
# The one statement that says whether a session is live, and whose user it is.
LIVE_USER = (
    select(*USER_SELECT)
    .join(LoginSession, LoginSession.user_id == User.id)
    .where(
        LoginSession.id == bindparam("session_id"),
        User.public_id == bindparam("public_id"),
        *LIVE,
    )
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
