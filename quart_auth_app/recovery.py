"""Account recovery by mail: the tokens of email verification and password reset (SPEC §6).

Tokens are random, stored only as SHA-256 digests, single-purpose and single-use, and bound to
what they vouch for: a reset token to the password hash it was issued under (so any password
change kills it), a verification token to the address it was mailed to. Every function takes
the session; outbox.py records the mails with their tokens and sends them, web/mail_jobs.py
renders them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .access_tokens import revoke_every
from .errors import InvalidMailToken
from .lookups import find_by_email
from .models import MailToken, User, utcnow
from .passwords import PasswordHasher
from .throttle import Throttle
from .tokens import token_digest
from .users import mark_verified, swap_password_hash

log = logging.getLogger(__name__)

RESET = "reset"
VERIFY = "verify"
LIFETIMES = {RESET: timedelta(minutes=30), VERIFY: timedelta(hours=48)}
MAX_TOKEN_LENGTH = 256
CLEANUP_BATCH = 500


def binding(user: User, purpose: str) -> bytes:
    """What the token vouches for, as a digest: the password hash, or the lower-cased email."""
    subject = user.password if purpose == RESET else user.email.lower()
    return hashlib.sha256(subject.encode()).digest()


def new_token() -> tuple[str, bytes]:
    """A fresh random token and the digest stored in its place."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


async def issue(db: AsyncSession, user: User, purpose: str) -> str:
    """Store a new token for the user and return it."""
    token = add_token(db, user, purpose)
    await db.commit()
    return token


def add_token(db: AsyncSession, user: User, purpose: str) -> str:
    """Add a new token for the user to the session's transaction (the caller commits it)."""
    token, digest = new_token()
    db.add(
        MailToken(
            digest=digest,
            user_id=user.id,
            purpose=purpose,
            binding=binding(user, purpose),
            expires_at=utcnow() + LIFETIMES[purpose],
        )
    )
    return token


async def claim(db: AsyncSession, token: str, purpose: str) -> User:
    """The user a live token of this purpose belongs to, else InvalidMailToken (nothing changes)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidMailToken()
    row = (
        await db.execute(
            select(MailToken, User)
            .join(User, User.id == MailToken.user_id)
            .where(MailToken.digest == token_digest(token), MailToken.purpose == purpose)
        )
    ).first()
    if row is None:
        raise InvalidMailToken()
    stored, user = row
    live = stored.used_at is None and stored.expires_at > utcnow() and user.is_active
    if not live or not hmac.compare_digest(stored.binding, binding(user, purpose)):
        raise InvalidMailToken()
    return user


async def consume(db: AsyncSession, token: str) -> None:
    """Mark the token used in one conditional write: of racing requests, exactly one gets past."""
    now = utcnow()
    result = await db.execute(
        update(MailToken)
        .where(
            MailToken.digest == token_digest(token),
            MailToken.used_at.is_(None),
            MailToken.expires_at > now,
        )
        .values(used_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await db.rollback()
        raise InvalidMailToken()


async def cleanup(db: AsyncSession) -> int:
    """Delete one bounded batch of expired tokens; returns how many went."""
    stale = select(MailToken.digest).where(MailToken.expires_at < utcnow()).limit(CLEANUP_BATCH)
    result = await db.execute(delete(MailToken).where(MailToken.digest.in_(stale)))
    await db.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


async def token_is_live(db: AsyncSession, token: str, purpose: str) -> bool:
    """Whether the token would be accepted now (for showing the form); uses nothing up."""
    try:
        await claim(db, token, purpose)
    except InvalidMailToken:
        return False
    finally:
        await db.commit()
    return True


async def reset_password(
    db: AsyncSession, hasher: PasswordHasher, token: str, new_password: str
) -> User:
    """Set a new password with a reset token; the token, the new hash and the revocation of
    every personal access token of the user commit together (a reset may follow a takeover)."""
    user = await claim(db, token, RESET)
    await db.commit()  # end the read before the slow hash
    new_hash = await hasher.hash(new_password)
    await consume(db, token)
    # The password may have changed while we hashed: then the token is stale after all.
    if not await swap_password_hash(db, user, new_hash):
        await db.rollback()
        raise InvalidMailToken()
    await revoke_every(db, user.id)
    await db.commit()
    return user


async def verify_email(db: AsyncSession, token: str) -> User:
    """Mark the address verified with a verification token."""
    user = await claim(db, token, VERIFY)
    await consume(db, token)
    await mark_verified(db, user.id)  # commits the token's use with it
    user.email_verified = True
    return user


async def token_for(
    db: AsyncSession, throttle: Throttle, purpose: str, email: str
) -> tuple[User, str] | None:
    """A new token for the account at `email`, or None: no account, a deactivated one, nothing
    to verify, or the address had enough mail of this purpose for now. The token is added to
    the session's transaction, not committed: the mail that carries it commits with it
    (outbox.py)."""
    user = await find_by_email(db, email)
    if user is None or not user.is_active or (purpose == VERIFY and user.email_verified):
        return None
    if not await throttle.mail_allowed(purpose, user.email_key):
        log.info("not sending another %s mail: the address had enough for now", purpose)
        return None
    return user, add_token(db, user, purpose)


def duration(span: timedelta) -> str:
    """A lifetime in words for a mail ("30 minutes", "48 hours")."""
    minutes = int(span.total_seconds()) // 60
    return (
        f"{minutes // 60} hours" if minutes % 60 == 0 and minutes >= 120 else f"{minutes} minutes"
    )
