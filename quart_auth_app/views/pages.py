"""The tutorial's routes: /, /signup, /login, /dashboard."""

from __future__ import annotations

from quart import Blueprint, flash, jsonify, redirect, render_template
from quart.typing import ResponseReturnValue

from ..auth import request_meta, set_auth_cookies, token_required
from ..db import request_session
from ..errors import EmailNotVerified, InvalidCredentials
from ..models import User
from ..negotiation import wants_html
from ..schemas import LoginIn, SignupIn, UserOut
from ..services import services
from ..users import authenticate, create_user
from . import feedback
from .forms import caller_address, form_input, model_json, next_param, safe_next

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
    user = await create_user(
        request_session(), services().hasher, body.name, body.email, body.password
    )
    await after_signup(user)
    if wants_html():
        await flash("Account created, please log in.", "success")
        feedback.remember_email(user.email)
        return redirect("/login")
    return model_json(UserOut(public_id=user.public_id, name=user.name, email=user.email), 201)


async def after_signup(user: User) -> None:
    """Hook run once a user exists (sends the verification mail when mail is set up)."""
    from ..mail_flows import send_verification

    await send_verification(user)


@blueprint.post("/login")
async def login() -> ResponseReturnValue:
    address = caller_address()
    app_services = services()
    throttle = app_services.throttle
    await throttle.attempt("login", address)
    body = await form_input(LoginIn, "login.html", next=next_param() or "")
    await throttle.check_failures(body.email, address)
    sessions = app_services.sessions
    try:
        user = await authenticate(
            request_session(), app_services.hasher, body.email, body.password, sessions.lookup
        )
    except InvalidCredentials:
        await throttle.record_failure(body.email, address)
        raise
    if app_services.settings.require_verified_email and not user.email_verified:
        raise EmailNotVerified(feedback.not_verified() if wants_html() else None)
    await throttle.clear_failures(body.email, address)
    pair = await sessions.start(request_session(), user, **request_meta())
    if wants_html():
        response = redirect(safe_next(next_param()))
        set_auth_cookies(response, pair)
        return response
    return jsonify(pair.as_json())


@blueprint.get("/dashboard")
@token_required
async def dashboard(user: User) -> ResponseReturnValue:
    message = f"Welcome {user.name}! You are logged in."
    if wants_html():
        return await render_template("dashboard.html", user=user, message=message)
    return jsonify({"message": message})
