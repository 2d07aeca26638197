"""The tutorial's routes: /, /signup, /login, /dashboard."""

from __future__ import annotations

from quart import Blueprint, flash, jsonify, redirect, render_template, request
from quart.typing import ResponseReturnValue

from ...errors import EmailNotVerified, MfaRequired
from ...models import User
from ...users import create_user
from ..auth import caller_address, set_auth_cookies, token_required
from ..forms import form_input, model_json, next_param, safe_next
from ..http import tutorial_form_caller, wants_html, wants_redirect
from ..mail_jobs import send_verification
from ..schemas import LoginIn, SignupIn, UserOut
from ..state import request_db, services
from . import feedback, mfa

blueprint = Blueprint("pages", __name__)
blueprint.app_context_processor(feedback.template_context)


@blueprint.get("/")
@blueprint.get("/login")
async def login_page() -> ResponseReturnValue:
    email = feedback.recalled_email()  # just signed up: only the password is left to type
    values = {"email": email} if email else {}
    return await render_template("login.html", values=values, next=next_param() or "")


@blueprint.get("/signup")
async def signup_page() -> ResponseReturnValue:
    return await render_template("signup.html", values={})


@blueprint.post("/signup")
async def signup() -> ResponseReturnValue:
    await services().throttle.attempt("signup", caller_address())
    body = await form_input(SignupIn, "signup.html")
    user = await create_user(request_db(), services().hasher, body.name, body.email, body.password)
    await send_verification(user.email)
    if wants_html():
        await flash("Account created, please log in.", "success")
        feedback.remember_email(user.email)
        return redirect("/login")
    if tutorial_form_caller():
        return redirect("/login")  # as the tutorial: no flashed message, so no session cookie
    return model_json(UserOut(public_id=user.public_id, name=user.name, email=user.email), 201)


@blueprint.post("/login")
async def login() -> ResponseReturnValue:
    address = caller_address()
    app_services = services()
    await app_services.throttle.attempt("login", address)
    body = await form_input(LoginIn, "login.html")
    # The redirect exists before the session does: nothing about it can fail once it is started.
    response = redirect(safe_next(next_param())) if wants_redirect() else None
    try:
        pair = await app_services.accounts.login(
            request_db(), body.email, body.password, address, request.headers.get("User-Agent")
        )
    except EmailNotVerified:
        # People are told where the link went; the API keeps the message of SPEC §6.
        raise EmailNotVerified(feedback.not_verified() if wants_html() else None) from None
    except MfaRequired as needed:
        return await mfa.second_step(needed)
    if response is None:
        return jsonify(pair.as_json())
    set_auth_cookies(response, pair)
    return response


@blueprint.get("/dashboard")
@token_required(scopes=["profile:read"])
async def dashboard(user: User) -> ResponseReturnValue:
    message = f"Welcome {user.name}! You are logged in."
    if wants_html():
        return await render_template("dashboard.html", user=user, message=message)
    return jsonify({"message": message})
