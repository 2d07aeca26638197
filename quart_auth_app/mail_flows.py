"""Mail-driven flows: email verification and password reset (SPEC §6).

Tokens are random, stored only as SHA-256 digests, single-purpose and single-use, and bound to
what they vouch for: a reset token to the password hash it was issued under (so any password
change kills it), a verification token to the address it was mailed to. The token functions
take the session; the `send_*` functions are called from views: they read the request for the
link and hand delivery to a background task, so a slow or dead SMTP server never shows.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from urllib.parse import urlencode

from quart import current_app, render_template, request
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .db import request_session
from .errors import InvalidMailToken
from .mail import Mail, Mailer
from .models import MailToken, User, utcnow
from .passwords import PasswordHasher
from .services import services
from .tokens import token_digest
from .users import find_by_email, mark_verified, swap_password_hash

log = logging.getLogger(__name__)

RESET = "reset"
VERIFY = "verify"
LIFETIMES = {RESET: timedelta(minutes=30), VERIFY: timedelta(hours=48)}
SUBJECTS = {RESET: "Reset your password", VERIFY: "Verify your email address"}
PATHS = {RESET: "/password/reset", VERIFY: "/verify"}
# Live tokens per user and purpose: caps how much mail anyone can aim at one inbox.
MAX_PENDING = 3
MAX_TOKEN_LENGTH = 256


def binding(user: User, purpose: str) -> bytes:
    """What the token vouches for, as a digest: the password hash, or the lower-cased email."""
    subject = user.password if purpose == RESET else user.email.lower()
    return hashlib.sha256(subject.encode()).digest()


def new_token() -> tuple[str, bytes]:
    """A fresh random token and the digest stored in its place."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


async def pending_tokens(db: AsyncSession, user_id: int, purpose: str) -> int:
    """How many unused, unexpired tokens of this purpose the user has."""
    count = await db.scalar(
        select(func.count())
        .select_from(MailToken)
        .where(
            MailToken.user_id == user_id,
            MailToken.purpose == purpose,
            MailToken.used_at.is_(None),
            MailToken.expires_at > utcnow(),
        )
    )
    return int(count or 0)


async def issue(db: AsyncSession, user: User, purpose: str) -> str | None:
    """Store a new token for the user and return it; None when too many are outstanding."""
    token, digest = new_token()
    if await pending_tokens(db, user.id, purpose) >= MAX_PENDING:
        await db.commit()
        log.info("not sending another %s mail: %d links are still live", purpose, MAX_PENDING)
        return None
    db.add(
        MailToken(
            digest=digest,
            user_id=user.id,
            purpose=purpose,
            binding=binding(user, purpose),
            expires_at=utcnow() + LIFETIMES[purpose],
        )
    )
    await db.commit()
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
    live = stored.used_at is None and stored.expires_at > utcnow()
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
    """Set a new password with a reset token; the token and the new hash commit together."""
    user = await claim(db, token, RESET)
    await db.commit()  # end the read before the slow hash
    new_hash = await hasher.hash(new_password)
    await consume(db, token)
    # The password may have changed while we hashed: then the token is stale after all.
    if not await swap_password_hash(db, user, new_hash):
        await db.rollback()
        raise InvalidMailToken()
    await db.commit()
    return user


async def verify_email(db: AsyncSession, token: str) -> User:
    """Mark the address verified with a verification token."""
    user = await claim(db, token, VERIFY)
    await consume(db, token)
    await mark_verified(db, user.id)  # commits the token's use with it
    user.email_verified = True
    return user


async def send_verification(user: User) -> None:
    """Mail the user a link that verifies their address."""
    token = await issue(request_session(), user, VERIFY)
    if token is not None:
        await _post(user, VERIFY, token)


async def send_reset(email: str) -> None:
    """Mail a reset link if the address has an account; unknown addresses cost the same work."""
    db = request_session()
    user = await find_by_email(db, email)
    if user is None:
        new_token()  # what a real request computes; the mail itself goes out in the background
        await pending_tokens(db, 0, RESET)
        await db.commit()
        return
    token = await issue(db, user, RESET)
    if token is not None:
        await _post(user, RESET, token)


def link_base() -> str:
    """PUBLIC_URL, else the scheme and host this request came to."""
    return services().settings.public_url or request.host_url.rstrip("/")


async def _post(user: User, purpose: str, token: str) -> None:
    link = f"{link_base()}{PATHS[purpose]}?{urlencode({'token': token})}"
    context = {"name": user.name, "link": link, "valid_for": _duration(LIFETIMES[purpose])}
    mail = Mail(
        to=user.email,
        subject=SUBJECTS[purpose],
        text=await render_template(f"mail/{purpose}.txt", **context),
        html=await render_template(f"mail/{purpose}.html", **context),
    )
    current_app.add_background_task(deliver, services().mailer, mail, purpose)


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds()) // 60
    return (
        f"{minutes // 60} hours" if minutes % 60 == 0 and minutes >= 120 else f"{minutes} minutes"
    )


async def deliver(mailer: Mailer, mail: Mail, purpose: str) -> None:
    """Send one mail; a failure is logged (never the mail, which holds the token) and dropped."""
    try:
        await mailer.send(mail)
    except Exception as exc:
        log.warning("could not send the %s mail: %s: %s", purpose, type(exc).__name__, exc)
