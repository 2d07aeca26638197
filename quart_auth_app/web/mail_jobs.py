"""Mails that requests cause (verification, reset, second-factor notices), through the outbox.

The request records only its intent, in its own transaction, before it answers: the same row
for every address, so neither the answer nor its timing tells whether an account exists, and
a store failure answers 503 for every address alike. The worker's sender (outbox.py) then
looks the account up, issues the token and stores this module's rendering of the mail in one
transaction, and sends it with retries; a slow or dead SMTP server never shows in a request.
"""

from __future__ import annotations

from urllib.parse import urlencode

from quart import Quart, render_template, request

from .. import outbox, recovery
from ..mail import Mail
from ..models import User, utcnow
from .state import mail_sender, request_db, services

SUBJECTS = {recovery.RESET: "Reset your password", recovery.VERIFY: "Verify your email address"}
PATHS = {recovery.RESET: "/password/reset", recovery.VERIFY: "/verify"}


async def send_verification(email: str) -> None:
    """Mail a verification link if the address has an unverified account."""
    await _queue(recovery.VERIFY, email)


async def send_reset(email: str) -> None:
    """Mail a reset link if the address has an account."""
    await _queue(recovery.RESET, email)


# Notices of second-factor changes: the person hears of them even if someone else made them.
TOTP_DISABLED = "totp_disabled"
CODES_REGENERATED = "codes_regenerated"
RECOVERY_CODE_USED = "recovery_code_used"
NOTICE_SUBJECTS = {
    TOTP_DISABLED: "Two-factor authentication was turned off",
    CODES_REGENERATED: "New recovery codes were made",
    RECOVERY_CODE_USED: "A recovery code was used to sign in",
}


async def send_totp_disabled(user: User) -> None:
    """Tell the user their second factor was turned off."""
    await _queue_notice(TOTP_DISABLED, user, {})


async def send_codes_regenerated(user: User) -> None:
    """Tell the user their recovery codes were replaced."""
    await _queue_notice(CODES_REGENERATED, user, {})


async def send_recovery_code_used(user: User, remaining: int) -> None:
    """Tell the user a recovery code signed them in, and how many are left."""
    await _queue_notice(RECOVERY_CODE_USED, user, {"remaining": remaining})


async def _queue_notice(kind: str, user: User, extra: dict[str, object]) -> None:
    # A notice carries no token and tells nothing a signed-in caller does not know: it is
    # rendered here and queued whole, sent by the outbox with its retries.
    context = {
        "name": user.name,
        "when": utcnow().strftime("%d %b %Y at %H:%M UTC"),
        "link": f"{link_base()}/account",
        **extra,
    }
    mail = Mail(
        to=user.email,
        subject=NOTICE_SUBJECTS[kind],
        text=await render_template(f"mail/mfa_{kind}.txt", **context),
        html=await render_template(f"mail/mfa_{kind}.html", **context),
    )
    db = request_db()
    outbox.queue_mail(db, kind, mail, utcnow())
    await db.commit()
    mail_sender().wake()


def link_base() -> str:
    """PUBLIC_URL, else the scheme and host this request came to (never X-Forwarded-Host)."""
    # Without PUBLIC_URL, start-up has made sure that either the mail goes to the developer's
    # own log or ALLOWED_HOSTS is set, whose gate (web/security.py) admitted this host.
    return services().settings.public_url or request.host_url.rstrip("/")


async def _queue(purpose: str, email: str) -> None:
    db = request_db()
    if outbox.queue(db, purpose, email, link_base(), utcnow()):
        await db.commit()
        mail_sender().wake()


def composer(app: Quart) -> outbox.Compose:
    """The outbox's renderer: the mail templates, in the app's context."""

    async def compose(purpose: str, user: User, token: str, base_url: str) -> Mail:
        async with app.app_context():
            return await render(user, token, purpose, base_url)

    return compose


async def render(user: User, token: str, purpose: str, base_url: str) -> Mail:
    """The mail of `purpose` for the user, its link carrying the token."""
    link = f"{base_url}{PATHS[purpose]}?{urlencode({'token': token})}"
    valid_for = recovery.duration(recovery.LIFETIMES[purpose])
    context = {"name": user.name, "link": link, "valid_for": valid_for}
    return Mail(
        to=user.email,
        subject=SUBJECTS[purpose],
        text=await render_template(f"mail/{purpose}.txt", **context),
        html=await render_template(f"mail/{purpose}.html", **context),
    )
