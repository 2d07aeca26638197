"""What an admin does to other accounts (SPEC §10): search, read, change, sign out.

Every action is one line on the `quart_auth_app.audit` logger: who did what to whom, never a
secret. The last active admin cannot be demoted or deactivated; the check and the write hold a
lock that every such change takes, so two admins demoting each other cannot leave none.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import InvalidInput, LastAdmin, NotFound
from .lookups import USER_SELECT, user_from_row
from .models import User, UserRole
from .permissions import ADMIN
from .roles import add_roles, remove_roles
from .rules import email_key
from .sessions import SessionService

audit = logging.getLogger("quart_auth_app.audit")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_QUERY = 320
# One PostgreSQL advisory lock for every change that may take away an admin.
ADMIN_LOCK_KEY = zlib.crc32(b"quart_auth_app.admins")
CURSOR_MAC_BYTES = 12
LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class UserPage:
    """One page of a search, and the cursor of the next (None on the last page)."""

    users: list[User]
    next_cursor: str | None


@dataclass(frozen=True)
class Change:
    """What an admin asks for; None leaves a field as it is.

    `roles` is the whole new set (PATCH); `drop_roles` takes roles away from whatever the user
    holds when the change is made (the console's `roles revoke`).
    """

    roles: frozenset[str] | None = None
    drop_roles: frozenset[str] = frozenset()
    is_active: bool | None = None
    name: str | None = None

    def roles_after(self, user: User) -> frozenset[str]:
        """The roles the user holds once the change is made."""
        return (user.roles if self.roles is None else self.roles) - self.drop_roles

    def described(self) -> dict[str, Any]:
        """The change as the audit line records it."""
        fields: dict[str, Any] = {
            "roles": sorted(self.roles) if self.roles is not None else None,
            "drop_roles": sorted(self.drop_roles) or None,
            "is_active": self.is_active,
            "name": self.name,
        }
        return {key: value for key, value in fields.items() if value is not None}


def cursor_key(secret_key: str) -> bytes:
    """The key that signs cursors, derived from SECRET_KEY for this use only."""
    return hashlib.sha256(b"quart_auth_app admin cursor\0" + secret_key.encode()).digest()


def _mac(key: bytes, last_id: int, query: str) -> bytes:
    message = f"{last_id}\0{query}".encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).digest()[:CURSOR_MAC_BYTES]


def encode_cursor(key: bytes, last_id: int, query: str) -> str:
    """An opaque cursor: where the page ended, bound to its query and signed."""
    raw = struct.pack(">Q", last_id) + _mac(key, last_id, query)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(key: bytes, cursor: str, query: str) -> int:
    """The id a cursor continues after; InvalidInput for anything this app did not write."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise _bad_cursor() from None
    if len(raw) != 8 + CURSOR_MAC_BYTES:
        raise _bad_cursor()
    (last_id,) = struct.unpack(">Q", raw[:8])
    if not hmac.compare_digest(raw[8:], _mac(key, last_id, query)):
        raise _bad_cursor()
    return int(last_id)


def _bad_cursor() -> InvalidInput:
    return InvalidInput("cursor: Invalid cursor", errors={"cursor": "Invalid cursor"})


def escape_like(text: str) -> str:
    """`text` matched literally by LIKE (with ESCAPE LIKE_ESCAPE): % and _ are not wildcards."""
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return text


def matching(query: str) -> ColumnElement[bool]:
    """Users whose name or email contains `query`, ignoring case.

    Emails are compared by their lookup key (case-folded in Python, so alike on both backends);
    names with ILIKE, which SQLite folds for ASCII letters only.
    """
    if not query:
        return true()
    name = f"%{escape_like(query)}%"
    email = f"%{escape_like(email_key(query))}%"
    return or_(
        User.name.ilike(name, escape=LIKE_ESCAPE),
        User.email_key.like(email, escape=LIKE_ESCAPE),
    )


async def search_users(
    db: AsyncSession, key: bytes, query: str = "", limit: int = DEFAULT_LIMIT, cursor: str = ""
) -> UserPage:
    """Users matching `query`, oldest first, `limit` at a time, from where `cursor` ended.

    Keyset pagination on the id: a user created during a walk comes after every page already
    read, so the walk neither skips nor repeats anyone.
    """
    after = decode_cursor(key, cursor, query) if cursor else 0
    rows = await db.execute(
        select(*USER_SELECT)
        .where(User.id > after, matching(query))
        .order_by(User.id)
        .limit(limit + 1)
    )
    await db.commit()
    users = [user_from_row(row) for row in rows]
    more = len(users) > limit
    users = users[:limit]
    next_cursor = encode_cursor(key, users[-1].id, query) if more else None
    return UserPage(users, next_cursor)


async def find_user(db: AsyncSession, public_id: str) -> User:
    """The user with this public id, else NotFound."""
    row = (await db.execute(select(*USER_SELECT).where(User.public_id == public_id))).first()
    if row is None:
        raise NotFound("User not found")
    return user_from_row(row)


async def get_user(db: AsyncSession, public_id: str) -> User:
    """find_user, ending the read transaction."""
    try:
        return await find_user(db, public_id)
    finally:
        await db.commit()


async def update_user(
    db: AsyncSession, sessions: SessionService, actor: User, public_id: str, change: Change
) -> User:
    """Apply an admin's change to a user and return the user as stored now.

    Deactivation also ends every session of the user (and announces it to the revocation list);
    reactivation brings none back.
    """
    async with sessions.store.write_turn():
        user = await change_user(db, public_id, change)
    if change.is_active is False:
        await sessions.revoke_all(db, user.id)
    record(actor, "update_user", user, change.described())
    return await get_user(db, public_id)


async def change_user(db: AsyncSession, public_id: str, change: Change) -> User:
    """Make the change in one transaction, unless it would leave no active admin (LastAdmin).

    Returns the user as they were before. Commits, or rolls back on any failure: on SQLite the
    file's write lock is held from the first statement to the end of the transaction.
    """
    try:
        await _lock_admins(db, public_id)
        user = await find_user(db, public_id)
        if _demotes(user, change) and await _other_active_admins(db, user.id) == 0:
            raise LastAdmin()
        await _apply(db, user, change)
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
    return user


async def logout_user(
    db: AsyncSession, sessions: SessionService, actor: User, public_id: str
) -> User:
    """End every session of the user."""
    user = await get_user(db, public_id)
    await sessions.revoke_all(db, user.id)
    record(actor, "logout_user", user)
    return user


def record(
    actor: User | str,
    action: str,
    target: User | None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """One audit line: who (a user, or "console") did what to whom, and what changed."""
    who = actor if isinstance(actor, str) else actor.public_id
    whom = target.public_id if target is not None else None
    fields = {"actor": who, "action": action, "target": whom, **(details or {})}
    text = " ".join(f"{name}={value!r}" for name, value in fields.items())
    audit.info("admin %s", text, extra={"audit": fields})


def _demotes(user: User, change: Change) -> bool:
    """Whether the change takes an active admin away."""
    if not user.is_active or ADMIN not in user.roles:
        return False
    return change.is_active is False or ADMIN not in change.roles_after(user)


async def _lock_admins(db: AsyncSession, public_id: str) -> None:
    """Serialise every change that may take an admin away, until this transaction ends."""
    if db.get_bind().dialect.name == "postgresql":
        await db.execute(select(func.pg_advisory_xact_lock(ADMIN_LOCK_KEY)))
        return
    # SQLite: a write as the transaction's first statement takes the file's write lock (waiting
    # DATABASE_TIMEOUT for another process's) before anything is read.
    await db.execute(
        update(User).where(User.public_id == public_id).values(is_active=User.is_active)
    )


async def _other_active_admins(db: AsyncSession, user_id: int) -> int:
    count = await db.scalar(
        select(func.count())
        .select_from(User)
        .join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == ADMIN, User.is_active.is_(True), User.id != user_id)
    )
    return int(count or 0)


async def _apply(db: AsyncSession, user: User, change: Change) -> None:
    values: dict[str, Any] = {}
    if change.name is not None:
        values["name"] = change.name
    if change.is_active is not None:
        values["is_active"] = change.is_active
    if values:
        await db.execute(update(User).where(User.id == user.id).values(**values))
    roles = change.roles_after(user)
    await remove_roles(db, user.id, user.roles - roles)
    await add_roles(db, user.id, roles - user.roles)
