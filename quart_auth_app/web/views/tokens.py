"""The token lifecycle over HTTP: refresh, logout, sessions, JWKS."""

from __future__ import annotations

from typing import cast

from quart import Blueprint, flash, jsonify, redirect, request
from quart.typing import ResponseReturnValue
from werkzeug.sansio.response import Response as ResponseType

from ...access_tokens import is_pat
from ...errors import InvalidInput, NotFound, RefreshRaced, TokenInvalid, TokenMissing
from ...models import User
from ..auth import (
    REFRESH_COOKIE,
    clear_auth_cookies,
    clear_cookies_after_request,
    current_claims,
    set_auth_cookies,
    token_required,
)
from ..forms import form_input, model_json, next_param, no_content, safe_next
from ..http import wants_html, wants_redirect
from ..schemas import RefreshIn, SessionOut, SessionsOut
from ..state import request_db, services, state

blueprint = Blueprint("tokens", __name__)

PAT_NOT_REFRESHED = (
    "A personal access token is not refreshed: it works until it expires or is revoked"
)


@blueprint.post("/token/refresh")
async def refresh() -> ResponseReturnValue:
    body = await form_input(RefreshIn)
    from_cookie = body.refresh_token is None
    token = body.refresh_token or request.cookies.get(REFRESH_COOKIE)
    state().protected = True  # a browser whose refresh fails goes back to the login page
    if not token:
        raise TokenMissing()
    if is_pat(token):
        raise InvalidInput(PAT_NOT_REFRESHED, errors={"refresh_token": PAT_NOT_REFRESHED})
    # The response exists before the token is used up: nothing about it can fail afterwards.
    redirect_to = redirect(safe_next(next_param())) if wants_html() else None
    try:
        rotated = await services().sessions.rotate(request_db(), token)
    except RefreshRaced:
        raise  # a concurrent request rotated it: keep the cookies that request is setting
    except TokenInvalid:
        if from_cookie:
            clear_cookies_after_request()
        raise
    response: ResponseType = (
        jsonify(rotated.tokens.as_json()) if redirect_to is None else redirect_to
    )
    if from_cookie or redirect_to is not None:
        set_auth_cookies(response, rotated.tokens)
    return cast(ResponseReturnValue, response)


async def _signed_out(message: str, notice: str) -> ResponseReturnValue:
    response: ResponseType
    if wants_html():
        await flash(notice, "success")  # shown on the login page the browser lands on
        response = redirect("/login")
    elif wants_redirect():
        response = redirect("/login")  # a tutorial client: no flashed message, no session cookie
    else:
        response = jsonify({"message": message})
    clear_auth_cookies(response)
    return cast(ResponseReturnValue, response)


@blueprint.post("/logout")
@token_required(session_only=True)
async def logout(user: User) -> ResponseReturnValue:
    await services().sessions.revoke(request_db(), user.id, current_claims().session_id)
    return await _signed_out("Logged out.", "You have been signed out.")


@blueprint.post("/logout/all")
@token_required(session_only=True)
async def logout_all(user: User) -> ResponseReturnValue:
    await services().sessions.revoke_all(request_db(), user.id)
    return await _signed_out("Logged out everywhere.", "You have been signed out on every device.")


@blueprint.get("/me/sessions")
@token_required(scopes=["sessions"])
async def list_sessions(user: User) -> ResponseReturnValue:
    current = current_claims().session_id
    rows = await services().sessions.list_live(request_db(), user.id)
    sessions = [
        SessionOut(
            id=row.id,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            user_agent=row.user_agent,
            client_address=row.client_address,
            current=row.id == current,
        )
        for row in rows
    ]
    return model_json(SessionsOut(sessions=sessions))


@blueprint.delete("/me/sessions/<session_id>")
@token_required(scopes=["sessions"])
async def revoke_session(user: User, session_id: str) -> ResponseReturnValue:
    if not await services().sessions.revoke(request_db(), user.id, session_id):
        raise NotFound("Session not found")
    return no_content()


@blueprint.get("/.well-known/jwks.json")
async def jwks() -> ResponseReturnValue:
    response = jsonify(services().tokens.keys.jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
