"""Login sessions (refresh-token families): start, rotate, revoke, list, and the access check.

Every protected request asks the store whether its session is live; nothing is cached, so a
logout committed by any worker or instance is refused on the very next request. The store is
the one seam where an accelerated implementation (speed/) may stand in for `EngineStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from .access_tokens import UsageRecorder, is_pat, well_formed
from .config import DEFAULT_DATABASE_TIMEOUT
from .db import sqlite_file
from .errors import RefreshRaced, TokenInvalid
from .lookups import (
    LIVE_SESSIONS,
    DbRow,
    PatGrant,
    find_by_email,
    read_live_user,
    read_pat_user,
)
from .models import LoginSession, RefreshToken, User, utcnow
from .revocation import RevocationList
from .tokens import Claims, InvalidToken, TokenService, token_digest

CLEANUP_BATCH = 500
# Session ids per statement of a batch liveness read: far below every backend's parameter limit.
LIVE_BATCH = 900
# A (session id, public id) pair, as an access token's claims name a session.
SessionKey = tuple[str, str]
# RFC 8176 method references: a password, and a password with a one-time code.
PASSWORD_ONLY = ("pwd",)
PASSWORD_AND_OTP = ("pwd", "otp")
# Session ids are token_urlsafe(16); anything else cannot name a session (and never reaches SQL).
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
# The tables themselves, for login's Core inserts.
LOGIN_SESSIONS = cast(Table, LoginSession.__table__)
REFRESH_TOKENS = cast(Table, RefreshToken.__table__)


class SessionStore(Protocol):
    """Where the access check and a login read, and a login writes: the seam speed/ may fill."""

    async def live_user(self, session_id: str, public_id: str) -> User | None:
        """The user of an unrevoked session, or None."""
        ...

    async def live_sessions(self, keys: Collection[SessionKey]) -> set[SessionKey]:
        """Which of the (session id, public id) pairs name a live session, read together."""
        ...

    async def user_for_pat(self, digest: bytes) -> PatGrant | None:
        """The unrevoked personal access token with this digest and its active user, or None."""
        ...

    async def user_by_email(self, email: str) -> User | None:
        """The user a login names (by the email's lookup key), or None."""
        ...

    async def insert_login(self, session_row: DbRow, token_row: DbRow) -> None:
        """Store a new session and its first refresh digest in one transaction."""
        ...

    def write_turn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held by every session write of this worker (SQLite: one writer at a time)."""
        ...

    async def close(self) -> None: ...


class WriteTurn:
    """One session write at a time, in arrival order; waiting past `timeout` is a stalled store.

    Without the bound, writes queued behind a stalled one would each wait their turn and then
    their own timeout: the last of them for minutes. TimeoutError is a 503 (faults.py).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> None:
        async with asyncio.timeout(self.timeout):
            await self._lock.acquire()

    async def __aexit__(self, *_exc: object) -> None:
        self._lock.release()


class EngineStore:
    """Any backend, through SQLAlchemy's public API: a pooled connection per call.

    On an SQLite file the worker's session writes take one turn, in arrival order: SQLite lets
    one connection write, and its busy handler sleeps up to 100 ms between retries, so under
    load some writers starved for seconds while others came and went.
    """

    def __init__(self, engine: AsyncEngine, timeout: float = DEFAULT_DATABASE_TIMEOUT) -> None:
        self.engine = engine
        self._turn: contextlib.AbstractAsyncContextManager[Any] = (
            WriteTurn(timeout) if sqlite_file(engine) else contextlib.nullcontext()
        )

    async def live_user(self, session_id: str, public_id: str) -> User | None:
        async with self.engine.connect() as conn:
            return await read_live_user(conn, session_id, public_id)

    async def live_sessions(self, keys: Collection[SessionKey]) -> set[SessionKey]:
        ids = sorted({session_id for session_id, _ in keys})
        found: set[SessionKey] = set()
        async with self.engine.connect() as conn:
            for start in range(0, len(ids), LIVE_BATCH):
                chunk = {"session_ids": ids[start : start + LIVE_BATCH]}
                found.update((row[0], row[1]) for row in await conn.execute(LIVE_SESSIONS, chunk))
        return found & set(keys)

    async def user_for_pat(self, digest: bytes) -> PatGrant | None:
        async with self.engine.connect() as conn:
            return await read_pat_user(conn, digest)

    async def user_by_email(self, email: str) -> User | None:
        async with self.engine.connect() as conn:
            return await find_by_email(conn, email)

    async def insert_login(self, session_row: DbRow, token_row: DbRow) -> None:
        async with self._turn, self.engine.begin() as conn:
            await conn.execute(insert(LOGIN_SESSIONS), [dict(session_row)])
            await conn.execute(insert(REFRESH_TOKENS), [dict(token_row)])

    def write_turn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._turn

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class TokenPair:
    """What a login or a refresh hands the client."""

    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    session_id: str

    def as_json(self) -> dict[str, str | int]:
        """The token response body of SPEC §4."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


@dataclass(frozen=True)
class SignIn:
    """When and how (RFC 8176 methods) the person behind a session last proved who they are."""

    auth_time: int
    amr: tuple[str, ...]


@dataclass(frozen=True)
class Rotated:
    """A successful refresh: the user it was for and their new tokens."""

    user: User
    tokens: TokenPair


class SessionService:
    """Token families on top of the token service, the database and the revocation list."""

    def __init__(
        self,
        tokens: TokenService,
        revocations: RevocationList,
        store: SessionStore,
        grace_seconds: int,
        usage: UsageRecorder,
    ) -> None:
        self.tokens = tokens
        self.revocations = revocations
        self.store = store
        self.usage = usage
        self.grace = timedelta(seconds=grace_seconds)

    async def start(
        self,
        user: User,
        user_agent: str | None,
        client_address: str | None,
        amr: tuple[str, ...] = PASSWORD_ONLY,
    ) -> TokenPair:
        """Open a new family for a login and issue its first pair (Core inserts, no ORM)."""
        now = utcnow()
        session_id = secrets.token_urlsafe(16)
        pair, token_row = self._pair(user, session_id, SignIn(int(now.timestamp()), amr))
        session_row = {
            "id": session_id,
            "user_id": user.id,
            "created_at": now,
            "last_used_at": now,
            "expires_at": now + self._refresh_lifetime(),
            "revoked_at": None,
            "user_agent": (user_agent or "")[:300] or None,
            "client_address": (client_address or "")[:64] or None,  # the column holds 64
        }
        await self.store.insert_login(session_row, token_row)
        return pair

    async def rotate(self, db: AsyncSession, refresh_token: str) -> Rotated:
        """Exchange a refresh token for a new pair; replays are refused, late ones kill the family."""
        claims = self._verify(refresh_token, "refresh")
        async with self.store.write_turn():
            return await self._rotate(db, refresh_token, claims)

    async def _rotate(self, db: AsyncSession, refresh_token: str, claims: Claims) -> Rotated:
        # Statements run on the session's connection: the ORM's bulk-update and unit-of-work
        # machinery cost more CPU than the SQL.
        conn = await db.connection()
        now = utcnow()
        digest = token_digest(refresh_token)
        won = await conn.execute(
            update(RefreshToken)
            .where(RefreshToken.digest == digest, RefreshToken.used_at.is_(None))
            .values(used_at=now)
        )
        if won.rowcount != 1:
            await self._refused_replay(db, digest, claims.session_id, now)
        user = await self._live_user(claims, conn)
        if user is None:
            await db.rollback()
            raise TokenInvalid()
        await conn.execute(
            update(LoginSession)
            .where(LoginSession.id == claims.session_id)
            .values(last_used_at=now, expires_at=now + self._refresh_lifetime())
        )
        sign_in = SignIn(claims.auth_time, claims.amr)
        pair, token_row = self._pair(user, claims.session_id, sign_in)
        await conn.execute(insert(REFRESH_TOKENS), token_row)
        await db.commit()
        return Rotated(user, pair)

    async def reissue(
        self, db: AsyncSession, user: User, session_id: str, amr: tuple[str, ...]
    ) -> TokenPair:
        """A new pair for the same session after a re-authentication: its sign-in is now."""
        pair, token_row = self._pair(user, session_id, SignIn(int(time.time()), amr))
        async with self.store.write_turn():
            conn = await db.connection()
            await conn.execute(insert(REFRESH_TOKENS), token_row)
            await db.commit()
        return pair

    async def user_for_access(self, token: str) -> tuple[User, Claims]:
        """The user behind a valid, unrevoked access token, else TokenInvalid."""
        claims = self._verify(token, "access")
        user = await self._live_user(claims)
        if user is None:
            raise TokenInvalid()
        return user, claims

    async def user_for_pat(self, token: str) -> PatGrant:
        """The grant of a live personal access token (one indexed read), else TokenInvalid.

        Its use is noted for last_used_at, which is written later and at most once a minute.
        """
        if not well_formed(token):
            raise TokenInvalid()
        grant = await self.store.user_for_pat(token_digest(token))
        now = utcnow()
        if grant is None or not grant.live(now):
            raise TokenInvalid()
        self.usage.seen(grant.token_id, grant.last_used_at, now)
        return grant

    async def revoke(self, db: AsyncSession, user_id: int, session_id: str) -> bool:
        """End one of the user's sessions; False if it was not theirs or already ended."""
        if not SESSION_ID.fullmatch(session_id):
            return False
        result = await db.execute(
            update(LoginSession)
            .where(
                LoginSession.id == session_id,
                LoginSession.user_id == user_id,
                LoginSession.revoked_at.is_(None),
            )
            .values(revoked_at=utcnow())
        )
        await db.commit()
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await self.revocations.revoke([session_id], self._refresh_lifetime())
        return True

    async def revoke_all(self, db: AsyncSession, user_id: int, keep: str | None = None) -> None:
        """End every session of the user, except `keep` if given."""
        condition = [LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None)]
        if keep is not None:
            condition.append(LoginSession.id != keep)
        ids = list((await db.execute(select(LoginSession.id).where(*condition))).scalars())
        await db.execute(update(LoginSession).where(*condition).values(revoked_at=utcnow()))
        await db.commit()
        await self.revocations.revoke(ids, self._refresh_lifetime())

    async def list_live(self, db: AsyncSession, user_id: int) -> list[LoginSession]:
        """The user's sessions that can still be used, newest first."""
        result = await db.execute(
            select(LoginSession)
            .where(
                LoginSession.user_id == user_id,
                LoginSession.revoked_at.is_(None),
                LoginSession.expires_at > utcnow(),
            )
            .order_by(LoginSession.last_used_at.desc())
        )
        return list(result.scalars())

    async def cleanup(self, db: AsyncSession) -> int:
        """Delete one bounded batch of expired or long-revoked rows; returns how many went."""
        now = utcnow()
        stale_tokens = select(RefreshToken.digest).where(RefreshToken.expires_at < now)
        done = await db.execute(
            delete(RefreshToken).where(RefreshToken.digest.in_(stale_tokens.limit(CLEANUP_BATCH)))
        )
        cutoff = now - self._refresh_lifetime()
        stale_sessions = select(LoginSession.id).where(
            (LoginSession.expires_at < now) | (LoginSession.revoked_at < cutoff)
        )
        gone = await db.execute(
            delete(LoginSession).where(LoginSession.id.in_(stale_sessions.limit(CLEANUP_BATCH)))
        )
        await db.commit()
        return int(done.rowcount + gone.rowcount)  # type: ignore[attr-defined]

    def _verify(self, token: str, expected: str) -> Claims:
        if is_pat(token):
            raise TokenInvalid()  # a personal access token is never decoded as a JWT
        try:
            return self.tokens.verify(token, "refresh" if expected == "refresh" else "access")
        except InvalidToken:
            raise TokenInvalid() from None

    async def _refused_replay(
        self, db: AsyncSession, digest: bytes, session_id: str, now: datetime
    ) -> None:
        used_at = await db.scalar(select(RefreshToken.used_at).where(RefreshToken.digest == digest))
        if used_at is not None and now - used_at > self.grace:
            # RFC 9700 §4.14: a late replay means the token leaked; end the whole family.
            await db.execute(
                update(LoginSession)
                .where(LoginSession.id == session_id, LoginSession.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            await db.commit()
            await self.revocations.revoke([session_id], self._refresh_lifetime())
            raise TokenInvalid()
        await db.rollback()
        # Inside the grace window (two tabs racing) the family lives on; callers may keep cookies.
        raise RefreshRaced() if used_at is not None else TokenInvalid()

    async def _live_user(self, claims: Claims, conn: AsyncConnection | None = None) -> User | None:
        """The claims' user if their session is live (not revoked, not ended), else None.

        The access check asks the store (on an SQLite file the batched reader): it reads the
        committed state, so a logout committed anywhere is seen. A rotation reads on `conn`, its
        own transaction's connection, after its first write: one connection per refresh (a
        second one, waited for while holding the first, starved a pooler's few connections).
        """
        if await self.revocations.is_revoked(claims.session_id):
            return None
        if conn is not None:
            return await read_live_user(conn, claims.session_id, claims.public_id)
        return await self.store.live_user(claims.session_id, claims.public_id)

    def _pair(
        self, user: User, session_id: str, sign_in: SignIn
    ) -> tuple[TokenPair, dict[str, Any]]:
        """A new token pair, and the row recording its refresh token's digest.

        Both tokens carry the sign-in's time and methods: the refresh token hands them on to
        the pair its rotation makes, so no table has to remember them. The roles are for the
        client to read; the access check uses the ones it reads.
        """
        claims = {"auth_time": sign_in.auth_time, "amr": list(sign_in.amr)}
        access = self.tokens.issue(
            user.public_id, session_id, "access", roles=sorted(user.roles), **claims
        )
        refresh = self.tokens.issue(user.public_id, session_id, "refresh", **claims)
        row = {
            "digest": token_digest(refresh.token),
            "session_id": session_id,
            "expires_at": utcnow() + self._refresh_lifetime(),
            "used_at": None,
        }
        pair = TokenPair(
            access.token,
            refresh.token,
            self.tokens.lifetimes["access"],
            self.tokens.lifetimes["refresh"],
            session_id,
        )
        return pair, row

    def _refresh_lifetime(self) -> timedelta:
        return timedelta(seconds=self.tokens.lifetimes["refresh"])
