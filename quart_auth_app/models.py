"""Database tables: users and their roles, login sessions (refresh-token families), refresh
and mail tokens, second factors, the mail outbox, personal access tokens."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import TypeDecorator

# What separates role names in User.role_names; a role name never holds it (permissions.NAME).
ROLE_SEPARATOR = " "


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_public_id() -> str:
    """A fresh random public id (uuid4), as the tutorial uses."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always hands back timezone-aware datetimes, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class role_list(GenericFunction[str]):
    """The role names of a group of rows joined by ROLE_SEPARATOR (NULL when there are none)."""

    type = String()
    inherit_cache = True


@compiles(role_list)
def _role_list_sqlite(element: role_list, compiler: SQLCompiler, **kw: Any) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)}, '{ROLE_SEPARATOR}')"


@compiles(role_list, "postgresql")
def _role_list_postgresql(element: role_list, compiler: SQLCompiler, **kw: Any) -> str:
    return f"string_agg({compiler.process(element.clauses, **kw)}, '{ROLE_SEPARATOR}')"


class UserRole(Base):
    """One role a user holds (SPEC §10); `admin` is the one the app itself knows."""

    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(50), primary_key=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(50), unique=True, index=True, default=new_public_id
    )
    name: Mapped[str] = mapped_column(String(100))
    # As the person typed it (normalised by email-validator at signup), shown and mailed to.
    email: Mapped[str] = mapped_column(String(320))
    # rules.email_key(email): what lookups compare and the database keeps unique (SPEC §4),
    # computed in Python so that SQLite and PostgreSQL agree on what one account is.
    email_key: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    password: Mapped[str] = mapped_column(String(255))
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # False: a deactivated account (SPEC §10): no login, no token, no mail.
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Read with every user row, so the access check learns the current roles in the same
    # single read that finds the session (no second query per protected request).
    role_names: Mapped[str | None] = column_property(
        select(role_list(UserRole.role))
        .where(UserRole.user_id == id)
        .correlate_except(UserRole)
        .scalar_subquery()
    )

    @property
    def roles(self) -> frozenset[str]:
        """The roles this user held when the row was read."""
        # Not loaded on a user inserted in this request (no lazy load in async code): such a
        # user holds no roles yet.
        names = self.__dict__.get("role_names")
        return frozenset(names.split(ROLE_SEPARATOR)) if names else frozenset()


class LoginSession(Base):
    """One login: the family its refresh tokens (and access tokens) belong to."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    user_agent: Mapped[str | None] = mapped_column(String(300), default=None)
    client_address: Mapped[str | None] = mapped_column(String(64), default=None)


class RefreshToken(Base):
    """A digest of one issued refresh token; `used_at` is set once, by the rotation that wins."""

    __tablename__ = "refresh_tokens"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("login_sessions.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class MailToken(Base):
    """A digest of a single-use token mailed for one purpose (password reset, verification)."""

    __tablename__ = "mail_tokens"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    # The password hash (or email) the token was issued against: a change makes it stale.
    binding: Mapped[bytes] = mapped_column(LargeBinary(32))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class UserTotp(Base):
    """A user's TOTP secret (encrypted); live once `confirmed_at` is set by a first good code."""

    __tablename__ = "user_totp"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    secret: Mapped[bytes] = mapped_column(LargeBinary(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The last time step a code was accepted for: a code is good once (RFC 6238 §5.2).
    last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)


class RecoveryCode(Base):
    """A digest of one single-use recovery code."""

    __tablename__ = "recovery_codes"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class MfaChallenge(Base):
    """A digest of an mfa_token: a right password waiting for its second factor."""

    __tablename__ = "mfa_challenges"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class OutboxMail(Base):
    """A mail a request caused, kept until it is sent (outbox.py).

    Queued as the request's intent (purpose, the address given, the base of links); the sender
    then issues its token and stores the rendered mail in one transaction. The body carries
    the token: it is deleted with the row once sent, and cleared when the mail is given up.
    """

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(320))
    base_url: Mapped[str] = mapped_column(String(2048))
    subject: Mapped[str | None] = mapped_column(String(200), default=None)
    text: Mapped[str | None] = mapped_column(Text, default=None)
    html: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # The lease of the sender working on the row: no other takes it before this time passes.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The class (and SMTP code) of the last failure: never a message that could quote the mail.
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)


class AccessToken(Base):
    """A personal access token (SPEC §10): only the SHA-256 digest of its secret is kept."""

    __tablename__ = "access_tokens"

    # Public: shown in listings and named by DELETE /me/tokens/<id>; says nothing of the secret.
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True, index=True)
    # Scope names joined by one space (permissions.NAME never holds a space).
    scopes: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
