"""Password reset and email verification: the pages, and the routes the mailed links lead to."""

from __future__ import annotations

from quart import Blueprint, flash, jsonify, redirect, render_template, request
from quart.typing import ResponseReturnValue

from ... import recovery
from ...errors import InvalidMailToken, TokenInvalid, TokenMissing
from ...models import User
from ..auth import authenticate_request, caller_address, clear_auth_cookies
from ..forms import form_input, model_json, no_content
from ..http import wants_html
from ..mail_jobs import send_reset, send_verification
from ..schemas import (
    ForgotPasswordIn,
    MessageOut,
    ResendVerificationIn,
    ResetPasswordIn,
    VerifyEmailIn,
    parse_input,
)
from ..state import FormPage, request_db, services, state
from . import feedback

blueprint = Blueprint("recovery", __name__)

RESET_SENT = (
    "If an account exists for that address, we have sent it a link to choose a new password. "
    "The link is valid for 30 minutes."
)
RESET_DONE = "Your password has been changed. Please log in with the new one."
VERIFIED = "Your email address is verified."
VERIFY_SENT = "We have sent you a new verification link."
ALREADY_VERIFIED = "Your email address is already verified."
VERIFY_RESENT = (
    "If that address has an account waiting for verification, we have sent it a new link."
)


@blueprint.get("/password/forgot")
async def forgot_page() -> ResponseReturnValue:
    return await render_template("forgot_password.html", values={})


@blueprint.post("/password/forgot")
async def forgot() -> ResponseReturnValue:
    await services().throttle.attempt("forgot", caller_address())
    body = await form_input(ForgotPasswordIn, "forgot_password.html")
    await send_reset(body.email)
    if wants_html():
        await flash(feedback.reset_sent(), "success")
        return redirect("/login")
    return model_json(MessageOut(message=RESET_SENT), 202)


@blueprint.get("/password/reset")
async def reset_page() -> ResponseReturnValue:
    token = request.args.get("token", "")
    live = await recovery.token_is_live(request_db(), token, recovery.RESET)
    if not live and not wants_html():
        raise InvalidMailToken()
    error = None if live else InvalidMailToken.message
    page = await render_template(
        "reset_password.html", values={"token": token}, invalid=not live, error=error
    )
    return page, 200 if live else 400


@blueprint.post("/password/reset")
async def reset() -> ResponseReturnValue:
    await services().throttle.attempt("reset", caller_address())
    body = await form_input(ResetPasswordIn, "reset_password.html")
    db = request_db()
    user = await recovery.reset_password(db, services().hasher, body.token, body.new_password)
    await services().sessions.revoke_all(db, user.id)
    if not wants_html():
        return no_content()
    await flash(RESET_DONE, "success")
    response = redirect("/login")
    clear_auth_cookies(response)
    return response


@blueprint.get("/verify")
async def verify_link() -> ResponseReturnValue:
    if not request.args.get("token") and wants_html():
        return await render_template("verify_email.html", values={})  # asks for the token
    state().form = FormPage("verify_email.html")  # a bad link re-renders this page
    await services().throttle.attempt("verify", caller_address())
    # The query is checked as POST /verify checks its body: an API client missing the token
    # gets a 400 naming it, as the OpenAPI says, never the page meant for people.
    link = parse_input(VerifyEmailIn, request.args.to_dict())
    await recovery.verify_email(request_db(), link.token)
    if wants_html():
        return await render_template("verify_email.html", values={}, verified=True)
    return jsonify({"message": VERIFIED})


@blueprint.post("/verify")
async def verify() -> ResponseReturnValue:
    await services().throttle.attempt("verify", caller_address())
    body = await form_input(VerifyEmailIn, "verify_email.html")
    await recovery.verify_email(request_db(), body.token)
    if wants_html():
        return await render_template("verify_email.html", values={}, verified=True)
    return jsonify({"message": VERIFIED})


@blueprint.post("/verify/request")
async def request_verification() -> ResponseReturnValue:
    await services().throttle.attempt("verify", caller_address())
    user = await _caller()
    if user is None:
        return await _resend_by_email()
    message = ALREADY_VERIFIED if user.email_verified else VERIFY_SENT
    if not user.email_verified:
        await send_verification(user.email)
    if wants_html():
        notice = ALREADY_VERIFIED if user.email_verified else feedback.verification_sent(user.email)
        await flash(notice, "success")
        return redirect("/dashboard")
    return model_json(MessageOut(message=message), 202)


async def _caller() -> User | None:
    """The signed-in caller; None when no credentials came at all (bad ones still answer 401)."""
    state().protected = True
    try:
        caller = await authenticate_request()
    except TokenInvalid:
        raise
    except TokenMissing:
        return None
    return caller.user


async def _resend_by_email() -> ResponseReturnValue:
    # Someone who may not log in before verifying (REQUIRE_VERIFIED_EMAIL) names their address;
    # the answer is the same whether or not it has an account, as for a forgotten password.
    body = await form_input(ResendVerificationIn, "verify_email.html")
    if body.email is None:
        raise TokenMissing()
    await send_verification(body.email)
    if wants_html():
        await flash(feedback.verification_resent(), "success")
        return redirect("/login")
    return model_json(MessageOut(message=VERIFY_RESENT), 202)
