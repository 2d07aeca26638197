"""Mails that requests cause (verification, reset, second-factor notices): sent after the response.

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
from ..models import User, utcnow
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


# Notices of second-factor changes: the person hears of them even if someone else made them.
TOTP_DISABLED = "totp_disabled"
CODES_REGENERATED = "codes_regenerated"
RECOVERY_CODE_USED = "recovery_code_used"
NOTICE_SUBJECTS = {
    TOTP_DISABLED: "Two-factor authentication was turned off",
    CODES_REGENERATED: "New recovery codes were made",
    RECOVERY_CODE_USED: "A recovery code was used to sign in",
}


def send_totp_disabled(user: User) -> None:
    """Tell the user their second factor was turned off."""
    _schedule_notice(TOTP_DISABLED, user, {})


def send_codes_regenerated(user: User) -> None:
    """Tell the user their recovery codes were replaced."""
    _schedule_notice(CODES_REGENERATED, user, {})


def send_recovery_code_used(user: User, remaining: int) -> None:
    """Tell the user a recovery code signed them in, and how many are left."""
    _schedule_notice(RECOVERY_CODE_USED, user, {"remaining": remaining})


def _schedule_notice(kind: str, user: User, context: dict[str, object]) -> None:
    mail_context = {
        "name": user.name,
        "when": utcnow().strftime("%d %b %Y at %H:%M UTC"),
        "link": f"{link_base()}/account",
        **context,
    }
    current_app.add_background_task(notice_job, kind, user.email, mail_context)


async def notice_job(kind: str, email: str, context: dict[str, object]) -> None:
    """Render and send one notice; failures are logged, not raised."""
    try:
        await services().mailer.send(
            Mail(
                to=email,
                subject=NOTICE_SUBJECTS[kind],
                text=await render_template(f"mail/mfa_{kind}.txt", **context),
                html=await render_template(f"mail/mfa_{kind}.html", **context),
            )
        )
    except Exception as exc:
        log.warning("could not send the %s mail: %s: %s", kind, type(exc).__name__, exc)


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
