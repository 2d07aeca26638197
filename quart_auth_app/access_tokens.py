"""Personal access tokens (SPEC §10): long-lived secrets a person makes for scripts and tools.

A token is `qaa_pat_` and 43 random URL-safe characters. The fixed prefix tells it from a JWT
before anything is decoded, and lets secret scanners recognise a leaked one. Only the SHA-256
digest of the secret is stored, so the secret is shown once, when it is made. A token is held
to the scopes it was made with, never passes a route that needs a login session, and ends
when it is revoked, expires, its account is deactivated or deleted, or the password is reset.
Every function takes the session and plain arguments; the access check's read is
lookups.PAT_USER, through the session store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from .errors import InvalidInput
from .faults import describe
from .models import AccessToken, User, utcnow
from .permissions import BUILT_IN_SCOPES, NAME
from .tokens import token_digest

log = logging.getLogger(__name__)

PREFIX = "qaa_pat_"
SECRET_BYTES = 32
# PREFIX and secrets.token_urlsafe(SECRET_BYTES): anything else is no token of ours.
SECRET = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_-]{43}")
TOKEN_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
# How many live (unrevoked, unexpired) tokens one account may hold.
MAX_TOKENS = 50
MAX_LIFETIME_DAYS = 365
# last_used_at is written at most once a minute per token, never on the request's path.
USAGE_INTERVAL = timedelta(seconds=60)


def is_pat(token: str) -> bool:
    """Whether a bearer token claims to be a personal access token (its prefix says so)."""
    return token.startswith(PREFIX)


def well_formed(token: str) -> bool:
    """Whether the token has the exact shape of a secret this module makes."""
    return SECRET.fullmatch(token) is not None


def scope_list(scopes: Iterable[str]) -> list[str]:
    """Scope names in the order listings show them."""
    return sorted(scopes)


def known_scopes(declared: Iterable[str]) -> frozenset[str]:
    """What a token may be given: the built-in scopes and every scope a route declares."""
    return frozenset(BUILT_IN_SCOPES) | frozenset(declared)


def checked_scopes(scopes: Iterable[str], known: frozenset[str]) -> frozenset[str]:
    """The requested scopes, each a valid name some route knows, else InvalidInput."""
    chosen = frozenset(scopes)
    if not chosen:
        raise InvalidInput("scopes: Choose at least one scope", errors={"scopes": "Required"})
    for scope in sorted(chosen):
        if not NAME.fullmatch(scope) or scope not in known:
            reason = f"Unknown scope {scope!r}; known: {', '.join(sorted(known))}"
            raise InvalidInput(f"scopes: {reason}", errors={"scopes": reason})
    return chosen


@dataclass(frozen=True)
class NewToken:
    """A token just made: its row, and the secret the caller sees this once."""

    row: AccessToken
    secret: str


async def create(
    db: AsyncSession,
    user: User,
    name: str,
    scopes: frozenset[str],
    expires_in_days: int | None,
) -> NewToken:
    """Make a token for the user; refused past MAX_TOKENS live ones or MAX_LIFETIME_DAYS."""
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_LIFETIME_DAYS:
        reason = f"Must be between 1 and {MAX_LIFETIME_DAYS} days"
        raise InvalidInput(f"expires_in_days: {reason}", errors={"expires_in_days": reason})
    now = utcnow()
    if await _live_count(db, user.id, now) >= MAX_TOKENS:
        await db.rollback()
        reason = f"You already have {MAX_TOKENS} access tokens: revoke one first"
        raise InvalidInput(reason, errors={"name": reason})
    secret = PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    row = AccessToken(
        id=secrets.token_urlsafe(9),
        user_id=user.id,
        name=name,
        digest=token_digest(secret),
        scopes=" ".join(scope_list(scopes)),
        created_at=now,
        expires_at=None if expires_in_days is None else now + timedelta(days=expires_in_days),
    )
    db.add(row)
    await db.commit()
    _audit("created", user, row.id, scopes=row.scopes.replace(" ", ","))
    return NewToken(row, secret)


def _audit(action: str, user: User, token_id: str, **more: str) -> None:
    """One key=value line per change (who, what, which token; never the secret)."""
    fields = {"event": f"access_token.{action}", "user": user.public_id, "token_id": token_id}
    fields.update(more)
    log.info(" ".join(f"{key}={value}" for key, value in fields.items()), extra=fields)


def _live(now: datetime) -> tuple[Any, ...]:
    return (
        AccessToken.revoked_at.is_(None),
        or_(AccessToken.expires_at.is_(None), AccessToken.expires_at > now),
    )


async def _live_count(db: AsyncSession, user_id: int, now: datetime) -> int:
    query = select(func.count()).select_from(AccessToken)
    return int(await db.scalar(query.where(AccessToken.user_id == user_id, *_live(now))) or 0)


async def list_live(db: AsyncSession, user_id: int) -> list[AccessToken]:
    """The user's tokens that still work, newest first."""
    result = await db.execute(
        select(AccessToken)
        .where(AccessToken.user_id == user_id, *_live(utcnow()))
        .order_by(AccessToken.created_at.desc(), AccessToken.id)
    )
    rows = list(result.scalars())
    await db.commit()  # end the read: the request may go on without a transaction open
    return rows


async def revoke(db: AsyncSession, user: User, token_id: str) -> bool:
    """Revoke one of the user's live tokens; False if it is unknown, not theirs or ended."""
    if not TOKEN_ID.fullmatch(token_id):
        return False
    result = await db.execute(
        update(AccessToken)
        .where(AccessToken.id == token_id, AccessToken.user_id == user.id, *_live(utcnow()))
        .values(revoked_at=utcnow())
    )
    await db.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    _audit("revoked", user, token_id)
    return True


async def revoke_every(db: AsyncSession, user_id: int) -> None:
    """Revoke every token of the user in the caller's transaction (the caller commits)."""
    await db.execute(
        update(AccessToken)
        .where(AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


class UsageRecorder:
    """Writes tokens' last_used_at in the background, at most once per USAGE_INTERVAL each.

    The access check reads last_used_at with the token, so a token used within the interval
    costs nothing more; a staler one is queued, and one task writes the queue in a single
    conditional UPDATE (which another worker's write within the interval makes a no-op). A
    failed write is logged and forgotten: it is a convenience, never the request's business.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        write_turn: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
    ) -> None:
        self.engine = engine
        self.write_turn = write_turn
        self._queued: set[str] = set()
        self._writing: asyncio.Task[None] | None = None

    def seen(self, token_id: str, last_used_at: datetime | None, now: datetime) -> None:
        """Note a use of the token; queue a write if its recorded use is stale."""
        if last_used_at is not None and now - last_used_at < USAGE_INTERVAL:
            return
        self._queued.add(token_id)
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_queued())

    async def _write_queued(self) -> None:
        try:
            while self._queued:
                batch, self._queued = sorted(self._queued), set()
                await self._write(batch)
        finally:
            self._writing = None

    async def _write(self, token_ids: list[str]) -> None:
        now = utcnow()
        stale = or_(
            AccessToken.last_used_at.is_(None),
            AccessToken.last_used_at < now - USAGE_INTERVAL,
        )
        statement = (
            update(AccessToken).where(AccessToken.id.in_(token_ids), stale).values(last_used_at=now)
        )
        try:
            async with self.write_turn(), self.engine.begin() as conn:
                await conn.execute(statement)
        except Exception as error:
            log.warning("recording access tokens' last use: %s", describe(error))

    async def idle(self) -> None:
        """Wait until every queued write has been made (tests; shutdown)."""
        while self._writing is not None:
            await asyncio.shield(self._writing)
