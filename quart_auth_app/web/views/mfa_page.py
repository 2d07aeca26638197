"""Two-factor set-up for people in a browser: the JSON routes' actions as pages on /account/mfa."""

from __future__ import annotations

from typing import Any

import segno
from markupsafe import Markup
from quart import Blueprint, Response, render_template
from quart.typing import ResponseReturnValue

from ...errors import InvalidInput
from ...mfa import Enrollment
from ...models import User
from ..auth import caller_address, token_required
from ..forms import form_input
from ..mail_jobs import send_codes_regenerated, send_totp_disabled
from ..schemas import RecoveryCodesDownloadIn, TotpCodeIn, TotpDisableIn, TotpEnrollIn
from ..state import request_db, services
from .account_page import TEMPLATE as ACCOUNT_PAGE
from .account_page import done, page_context

blueprint = Blueprint("mfa_page", __name__)

SETUP_PAGE = "mfa_setup.html"
CODES_PAGE = "mfa_codes.html"
CODES_FILE = "recovery-codes.txt"
STALE_CODES = "These codes are no longer valid: make a new set on your account page."


def qr_svg(uri: str) -> Markup:
    """The otpauth URI as an inline SVG QR code, drawn here: no outside service sees the secret."""
    svg = segno.make(uri, error="m").svg_inline(
        scale=4, dark="#101828", light="#ffffff", title="QR code for your authenticator app"
    )
    return Markup(svg)  # noqa: S704 - segno's own markup for our own URI, nothing a user typed


async def _setup_context(user: User, enrollment: Enrollment | None = None) -> dict[str, Any]:
    found = enrollment or await services().accounts.mfa.pending(request_db(), user)
    if found is None:
        return {"user": user, "enrollment": None, "qr": None}
    return {"user": user, "enrollment": found, "qr": qr_svg(found.otpauth_uri)}


@blueprint.post("/account/mfa/setup")
@token_required(session_only=True)
async def setup(user: User) -> ResponseReturnValue:
    context = await page_context(user, "mfa_setup")
    body = await form_input(TotpEnrollIn, ACCOUNT_PAGE, **context)
    enrollment = await services().accounts.enroll_totp(
        request_db(), user, body.password, caller_address()
    )
    return await render_template(SETUP_PAGE, values={}, **await _setup_context(user, enrollment))


@blueprint.post("/account/mfa/confirm")
@token_required(session_only=True)
async def confirm(user: User) -> ResponseReturnValue:
    body = await form_input(TotpCodeIn, SETUP_PAGE, **await _setup_context(user))
    codes = await services().accounts.confirm_totp(request_db(), user, body.code, caller_address())
    return await _codes_page(user, codes, "Two-factor authentication is on.")


@blueprint.post("/account/mfa/recovery-codes")
@token_required(session_only=True)
async def regenerate(user: User) -> ResponseReturnValue:
    context = await page_context(user, "mfa_codes")
    body = await form_input(TotpCodeIn, ACCOUNT_PAGE, **context)
    codes = await services().accounts.regenerate_codes(
        request_db(), user, body.code, caller_address()
    )
    await send_codes_regenerated(user)
    return await _codes_page(user, codes, "New recovery codes made; the old ones no longer work.")


async def _codes_page(user: User, codes: list[str], notice: str) -> ResponseReturnValue:
    return await render_template(CODES_PAGE, values={}, user=user, codes=codes, notice=notice)


@blueprint.post("/account/mfa/recovery-codes/download")
@token_required(session_only=True)
async def download_codes(user: User) -> ResponseReturnValue:
    """The codes just shown, as a file: only while every one of them is still unused."""
    body = await form_input(RecoveryCodesDownloadIn)
    codes = body.codes.split()
    if not await services().accounts.mfa.codes_are_live(request_db(), user.id, codes):
        raise InvalidInput(STALE_CODES)
    text = "Recovery codes for your account (each works once):\n\n" + "\n".join(codes) + "\n"
    return Response(
        text,
        content_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{CODES_FILE}"'},
    )


@blueprint.post("/account/mfa/disable")
@token_required(fresh=True, session_only=True)
async def disable(user: User) -> ResponseReturnValue:
    context = await page_context(user, "mfa_disable")
    body = await form_input(TotpDisableIn, ACCOUNT_PAGE, **context)
    await services().accounts.disable_totp(
        request_db(), user, body.password, body.code, caller_address()
    )
    await send_totp_disabled(user)
    return await done("Two-factor authentication is off.")
