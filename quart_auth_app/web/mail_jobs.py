"""Mails that requests cause (verification, reset): rendered and sent after the response.

The request does the same for every address and hands the rest to a background task: look-up,
token and mail all happen after the response, so neither its body nor its timing tells whether
an account exists, and a slow or dead SMTP server never shows.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from quart import current_app, render_template, request

from .. import recovery
from ..mail import Mail
from ..models import User
from .state import services

log = logging.getLogger(__name__)

SUBJECTS = {recovery.RESET: "Reset your password", recovery.VERIFY: "Verify your email address"}
PATHS = {recovery.RESET: "/password/reset", recovery.VERIFY: "/verify"}


def send_verification(email: str) -> None:
    """Mail a verification link if the address has an unverified account."""
    _schedule(recovery.VERIFY, email)


def send_reset(email: str) -> None:
    """Mail a reset link if the address has an account."""
    _schedule(recovery.RESET, email)


def link_base() -> str:
    """PUBLIC_URL, else the scheme and host this request came to (never X-Forwarded-Host)."""
    # Without PUBLIC_URL, start-up has made sure that either the mail goes to the developer's
    # own log or ALLOWED_HOSTS is set, whose gate (web/security.py) admitted this host.
    return services().settings.public_url or request.host_url.rstrip("/")


def _schedule(purpose: str, email: str) -> None:
    current_app.add_background_task(mail_job, purpose, email, link_base())


async def mail_job(purpose: str, email: str, base_url: str) -> None:
    """Issue a token for the account at `email` and mail it; failures are logged, not raised."""
    app_services = services()
    try:
        async with app_services.db_sessions() as db:
            found = await recovery.token_for(db, app_services.throttle, purpose, email)
        if found is not None:
            await app_services.mailer.send(await _render(*found, purpose, base_url))
    except Exception as exc:
        # Never the mail itself: it holds the token.
        log.warning("could not send the %s mail: %s: %s", purpose, type(exc).__name__, exc)


async def _render(user: User, token: str, purpose: str, base_url: str) -> Mail:
    link = f"{base_url}{PATHS[purpose]}?{urlencode({'token': token})}"
    valid_for = recovery.duration(recovery.LIFETIMES[purpose])
    context = {"name": user.name, "link": link, "valid_for": valid_for}
    return Mail(
        to=user.email,
        subject=SUBJECTS[purpose],
        text=await render_template(f"mail/{purpose}.txt", **context),
        html=await render_template(f"mail/{purpose}.html", **context),
    )
