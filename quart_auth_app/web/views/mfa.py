"""The second factor over HTTP: TOTP set-up, the login's second step, and step-up (/reauth)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify, redirect, render_template, request
from quart.typing import ResponseReturnValue

from ...errors import MfaRequired
from ...models import User
from ..auth import caller_address, current_claims, set_auth_cookies, token_required
from ..forms import form_input, model_json, next_param, no_content, safe_next
from ..http import wants_html, wants_redirect
from ..mail_jobs import send_codes_regenerated, send_recovery_code_used, send_totp_disabled
from ..schemas import (
    LoginMfaIn,
    MfaRequiredOut,
    ReauthIn,
    RecoveryCodesOut,
    TotpCodeIn,
    TotpDisableIn,
    TotpEnrollIn,
    TotpEnrollmentOut,
)
from ..state import request_db, services

blueprint = Blueprint("mfa", __name__)

SECOND_STEP_PAGE = "login_mfa.html"
REAUTH_PAGE = "reauth.html"


async def second_step(needed: MfaRequired) -> ResponseReturnValue:
    """The answer to a right password on an account with TOTP: the code page, or a 403 to finish."""
    if wants_html():
        return await render_template(
            SECOND_STEP_PAGE, values={}, mfa_token=needed.mfa_token, next=next_param() or ""
        )
    body = MfaRequiredOut(
        message=needed.message,
        mfa_required=True,
        mfa_token=needed.mfa_token,
        methods=list(needed.methods),
    )
    return model_json(body, 403)


@blueprint.post("/login/mfa")
async def login_mfa() -> ResponseReturnValue:
    address = caller_address()
    await services().throttle.attempt("login", address)
    body = await form_input(LoginMfaIn, SECOND_STEP_PAGE)
    response = redirect(safe_next(next_param())) if wants_redirect() else None
    done = await services().accounts.finish_login(
        request_db(),
        body.mfa_token,
        body.code,
        body.recovery_code,
        address,
        request.headers.get("User-Agent"),
    )
    if done.used_recovery_code:
        remaining = await services().accounts.mfa.remaining_codes(request_db(), done.user.id)
        await send_recovery_code_used(done.user, remaining)
    if response is None:
        return jsonify(done.tokens.as_json())
    set_auth_cookies(response, done.tokens)
    return response


@blueprint.get("/reauth")
@token_required(session_only=True)
async def reauth_page(user: User) -> ResponseReturnValue:
    return await render_template(REAUTH_PAGE, values={}, **await _reauth_context(user))


@blueprint.post("/reauth")
@token_required(session_only=True)
async def reauth(user: User) -> ResponseReturnValue:
    body = await form_input(ReauthIn, REAUTH_PAGE, **await _reauth_context(user))
    pair = await services().accounts.reauthenticate(
        request_db(), user, current_claims().session_id, body.password, body.code, caller_address()
    )
    if not wants_html():
        return jsonify(pair.as_json())
    response = redirect(safe_next(next_param(), "/account"))
    set_auth_cookies(response, pair)
    return response


async def _reauth_context(user: User) -> dict[str, Any]:
    totp = await services().accounts.mfa.enabled(request_db(), user.id)
    return {"user": user, "totp": totp, "next": next_param() or ""}


@blueprint.post("/me/mfa/totp")
@token_required(session_only=True)
async def enroll(user: User) -> ResponseReturnValue:
    body = await form_input(TotpEnrollIn)
    found = await services().accounts.enroll_totp(
        request_db(), user, body.password, caller_address()
    )
    return model_json(TotpEnrollmentOut(secret=found.secret, otpauth_uri=found.otpauth_uri))


@blueprint.post("/me/mfa/totp/confirm")
@token_required(session_only=True)
async def confirm(user: User) -> ResponseReturnValue:
    body = await form_input(TotpCodeIn)
    codes = await services().accounts.confirm_totp(request_db(), user, body.code, caller_address())
    return model_json(RecoveryCodesOut(recovery_codes=codes))


@blueprint.post("/me/mfa/recovery-codes")
@token_required(session_only=True)
async def regenerate(user: User) -> ResponseReturnValue:
    body = await form_input(TotpCodeIn)
    codes = await services().accounts.regenerate_codes(
        request_db(), user, body.code, caller_address()
    )
    await send_codes_regenerated(user)
    return model_json(RecoveryCodesOut(recovery_codes=codes))


@blueprint.delete("/me/mfa/totp")
@token_required(fresh=True, session_only=True)
async def disable(user: User) -> ResponseReturnValue:
    body = await form_input(TotpDisableIn)
    await services().accounts.disable_totp(
        request_db(), user, body.password, body.code, caller_address()
    )
    await send_totp_disabled(user)
    return no_content()
