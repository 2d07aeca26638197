"""Password reset and email verification: the pages, and the routes the mailed links lead to."""

from __future__ import annotations

from quart import Blueprint, flash, g, jsonify, redirect, render_template, request
from quart.typing import ResponseReturnValue

from .. import mail_flows
from ..auth import authenticate_request, clear_auth_cookies
from ..db import request_session
from ..errors import InvalidMailToken, TokenInvalid, TokenMissing
from ..models import User
from ..negotiation import wants_html
from ..schemas import (
    ForgotPasswordIn,
    MessageOut,
    ResendVerificationIn,
    ResetPasswordIn,
    VerifyEmailIn,
    parse_input,
)
from ..services import services
from .forms import caller_address, form_input, model_json, no_content

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
    await mail_flows.send_reset(body.email)
    if wants_html():
        await flash(RESET_SENT, "success")
        return redirect("/login")
    return model_json(MessageOut(message=RESET_SENT), 202)


@blueprint.get("/password/reset")
async def reset_page() -> ResponseReturnValue:
    token = request.args.get("token", "")
    live = await mail_flows.token_is_live(request_session(), token, mail_flows.RESET)
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
    db = request_session()
    user = await mail_flows.reset_password(db, services().hasher, body.token, body.new_password)
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
    g.form_template = "verify_email.html"  # a bad link re-renders this page with the message
    await services().throttle.attempt("verify", caller_address())
    # The query is checked as POST /verify checks its body: an API client missing the token
    # gets a 400 naming it, as the OpenAPI says, never the page meant for people.
    link = parse_input(VerifyEmailIn, request.args.to_dict())
    await mail_flows.verify_email(request_session(), link.token)
    if wants_html():
        return await render_template("verify_email.html", values={}, verified=True)
    return jsonify({"message": VERIFIED})


@blueprint.post("/verify")
async def verify() -> ResponseReturnValue:
    await services().throttle.attempt("verify", caller_address())
    body = await form_input(VerifyEmailIn, "verify_email.html")
    await mail_flows.verify_email(request_session(), body.token)
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
        await mail_flows.send_verification(user)
    if wants_html():
        await flash(message, "success")
        return redirect("/dashboard")
    return model_json(MessageOut(message=message), 202)


async def _caller() -> User | None:
    """The signed-in caller; None when no credentials came at all (bad ones still answer 401)."""
    g.protected_page = True
    try:
        user, _ = await authenticate_request()
    except TokenInvalid:
        raise
    except TokenMissing:
        return None
    return user


async def _resend_by_email() -> ResponseReturnValue:
    # Someone who may not log in before verifying (REQUIRE_VERIFIED_EMAIL) names their address;
    # the answer is the same whether or not it has an account, as for a forgotten password.
    body = await form_input(ResendVerificationIn, "verify_email.html")
    if body.email is None:
        raise TokenMissing()
    await mail_flows.resend_verification(body.email)
    if wants_html():
        await flash(VERIFY_RESENT, "success")
        return redirect("/login")
    return model_json(MessageOut(message=VERIFY_RESENT), 202)
