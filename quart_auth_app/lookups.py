"""The reads on the hot paths, as Core statements: a live session's user, a personal access
token's user, a user by email.

Core, not the ORM: no unit of work or identity map for reads that every protected request and
every login make. Each returns a detached User that callers only read (writes are UPDATEs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from .models import AccessToken, LoginSession, User
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
# Which of many sessions are live (open websockets, checked together): (id, public id) rows.
LIVE_SESSIONS = (
    select(LoginSession.id, User.public_id)
    .join(User, User.id == LoginSession.user_id)
    .where(LoginSession.id.in_(bindparam("session_ids", expanding=True)), *LIVE)
)


def user_from_row(row: Row[Any] | Sequence[Any]) -> User:
    """A detached User from a row of the user's columns (only read; writes are UPDATEs)."""
    return User(**dict(zip(USER_COLUMNS, row, strict=True)))


async def read_live_user(
    db: AsyncConnection | AsyncSession, session_id: str, public_id: str
) -> User | None:
    """The user of an unrevoked session, read on the caller's connection or session."""
    params = {"session_id": session_id, "public_id": public_id}
    row = (await db.execute(LIVE_USER, params)).first()
    return None if row is None else user_from_row(row)


# A personal access token's columns read with its user; the expiry is compared in Python (one
# statement for every store, no timestamp to bind).
PAT_COLUMNS = tuple(
    AccessToken.__table__.c[name] for name in ("id", "scopes", "expires_at", "last_used_at")
)
# The one statement of a PAT check: its digest (unique index) to the token and its live user.
PAT_USER = (
    select(*USER_SELECT, *PAT_COLUMNS)
    .join(AccessToken, AccessToken.user_id == User.id)
    .where(
        AccessToken.digest == bindparam("digest"),
        AccessToken.revoked_at.is_(None),
        User.is_active.is_(True),
    )
)


@dataclass(frozen=True)
class PatGrant:
    """An unrevoked personal access token of an active user, as one read found it."""

    user: User
    token_id: str
    scopes: frozenset[str]
    expires_at: datetime | None
    last_used_at: datetime | None

    def live(self, now: datetime) -> bool:
        """Whether the token has not expired at `now`."""
        return self.expires_at is None or self.expires_at > now


def pat_grant(user: User, token_columns: Sequence[Any]) -> PatGrant:
    """A PatGrant from a user and the PAT_COLUMNS values read with it."""
    token_id, scopes, expires_at, last_used_at = token_columns
    return PatGrant(user, token_id, frozenset(scopes.split()), expires_at, last_used_at)


async def read_pat_user(db: AsyncConnection | AsyncSession, digest: bytes) -> PatGrant | None:
    """The unrevoked token with this digest and its active user, else None."""
    row = (await db.execute(PAT_USER, {"digest": digest})).first()
    if row is None:
        return None
    split = len(USER_COLUMNS)
    return pat_grant(user_from_row(row[:split]), row[split:])


BY_EMAIL = select(*USER_SELECT).where(User.email_key == bindparam("key"))
# What a row to insert is: column name -> value.
DbRow = Mapping[str, Any]


async def find_by_email(db: AsyncSession | AsyncConnection, email: str) -> User | None:
    """The user whose email has the key of `email`, an address or a key."""
    row = (await db.execute(BY_EMAIL, {"key": email_key(email)})).first()
    return None if row is None else user_from_row(row)
