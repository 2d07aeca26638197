"""The account page for people in a browser: the JSON account routes' actions as HTML forms."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from quart import Blueprint, flash, make_response, redirect, render_template
from quart.typing import ResponseReturnValue
from werkzeug.wrappers import Response as WerkzeugResponse

from ... import access_tokens
from ...access_tokens import NewToken, scope_list
from ...errors import NotFound
from ...models import AccessToken, LoginSession, User
from ...permissions import ADMIN
from ...users import rename
from ..auth import caller_address, clear_auth_cookies, current_claims, token_required
from ..forms import form_input
from ..schemas import ChangePasswordIn, DeleteMeIn, NewAccessTokenIn, UpdateMeIn
from ..state import request_db, services
from .access_tokens import SCOPES_FIELD, app_scopes, make_token
from .account import change_own_password

blueprint = Blueprint("browser", __name__)

TEMPLATE = "account.html"
BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"))
SYSTEMS = (("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"), ("Windows", "Windows"))
SYSTEMS_LATE = (("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


@dataclass(frozen=True)
class Device:
    """One live session as the account page lists it."""

    id: str
    label: str
    address: str
    created_at: str
    last_used_at: str
    current: bool


def device_label(user_agent: str | None) -> str:
    """A short "Browser on System" for a User-Agent; people recognise that, not the raw string."""
    if not user_agent:
        return "Unknown device"
    browser = _first_match(user_agent, BROWSERS)
    if browser is None and "Safari/" in user_agent:
        browser = "Safari"
    system = _first_match(user_agent, SYSTEMS + SYSTEMS_LATE)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or re.split(r"[\s/]", user_agent.strip(), maxsplit=1)[0][:40]


def _first_match(text: str, table: tuple[tuple[str, str], ...]) -> str | None:
    return next((name for marker, name in table if marker in text), None)


def _when(moment: datetime) -> str:
    return moment.strftime("%d %b %Y, %H:%M UTC")


def _device(row: LoginSession, current: str) -> Device:
    return Device(
        id=row.id,
        label=device_label(row.user_agent),
        address=row.client_address or "unknown address",
        created_at=_when(row.created_at),
        last_used_at=_when(row.last_used_at),
        current=row.id == current,
    )


@dataclass(frozen=True)
class TokenLine:
    """One live personal access token as the account page lists it."""

    id: str
    name: str
    scopes: str
    created_at: str
    last_used_at: str
    expires_at: str


def _token_line(row: AccessToken) -> TokenLine:
    return TokenLine(
        id=row.id,
        name=row.name,
        scopes=", ".join(row.scopes.split()),
        created_at=_when(row.created_at),
        last_used_at=_when(row.last_used_at) if row.last_used_at else "never used",
        expires_at=f"expires {_when(row.expires_at)}" if row.expires_at else "never expires",
    )


async def page_context(user: User, form: str | None = None) -> dict[str, Any]:
    """What account.html needs; `form` says which section an error belongs to."""
    current = current_claims().session_id
    rows = await services().sessions.list_live(request_db(), user.id)
    devices = sorted((_device(row, current) for row in rows), key=lambda d: not d.current)
    mfa = services().accounts.mfa
    totp = await mfa.enabled(request_db(), user.id)
    codes_left = await mfa.remaining_codes(request_db(), user.id) if totp else 0
    tokens = [_token_line(row) for row in await access_tokens.list_live(request_db(), user.id)]
    return {
        "user": user,
        "devices": devices,
        "form": form,
        "totp": totp,
        "codes_left": codes_left,
        "tokens": tokens,
        # The admin scope is of use only to an admin: the page offers it to them alone.
        "known_scopes": [s for s in scope_list(app_scopes()) if s != ADMIN or ADMIN in user.roles],
        "new_token": None,
    }


async def done(message: str, target: str = "/account") -> WerkzeugResponse:
    """Redirect after a successful form post, with a message for the next page."""
    await flash(message, "success")
    return redirect(target)


@blueprint.get("/account")
@token_required(session_only=True)
async def account(user: User) -> ResponseReturnValue:
    return await render_template(TEMPLATE, values={}, **await page_context(user))


@blueprint.post("/account/name")
@token_required(session_only=True)
async def change_name(user: User) -> ResponseReturnValue:
    body = await form_input(UpdateMeIn, TEMPLATE, **await page_context(user, "name"))
    await rename(request_db(), user, body.name)
    return await done(f"Your name is now {body.name}.")


@blueprint.post("/account/password")
@token_required(session_only=True)
async def change_password(user: User) -> ResponseReturnValue:
    body = await form_input(ChangePasswordIn, TEMPLATE, **await page_context(user, "password"))
    await change_own_password(user, body)
    return await done("Password changed. Your other devices have been signed out.")


@blueprint.post("/account/sessions/<session_id>/revoke")
@token_required(session_only=True)
async def revoke_session(user: User, session_id: str) -> ResponseReturnValue:
    if not await services().sessions.revoke(request_db(), user.id, session_id):
        raise NotFound("That session has already ended or is not yours.")
    if session_id != current_claims().session_id:
        return await done("That device has been signed out.")
    response = await done("You have been signed out on this device.", "/login")
    clear_auth_cookies(response)
    return response


@blueprint.post("/account/tokens")
@token_required(fresh=True, session_only=True)
async def create_token(user: User) -> ResponseReturnValue:
    context = await page_context(user, "token")
    body = await form_input(NewAccessTokenIn, TEMPLATE, lists=SCOPES_FIELD, **context)
    made: NewToken = await make_token(user, body)
    # Shown on this page, never flashed: a flashed secret would travel in the session cookie.
    page = await render_template(
        TEMPLATE, values={}, **{**await page_context(user), "new_token": made}
    )
    response = await make_response(page)
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/account/tokens/<token_id>/revoke")
@token_required(session_only=True)
async def revoke_token(user: User, token_id: str) -> ResponseReturnValue:
    if not await access_tokens.revoke(request_db(), user, token_id):
        raise NotFound("That access token has already been revoked or is not yours.")
    return await done("The access token has been revoked.")


@blueprint.post("/account/delete")
@token_required(session_only=True)
async def delete_account(user: User) -> ResponseReturnValue:
    body = await form_input(DeleteMeIn, TEMPLATE, **await page_context(user, "delete"))
    await services().accounts.delete(request_db(), user, body.password, caller_address())
    response = await done("Your account has been deleted. Goodbye!", "/signup")
    clear_auth_cookies(response)
    return response
