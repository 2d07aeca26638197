"""Mails that requests cause (verification, reset): queued in the outbox, rendered for it.

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
