"""The signed-in user's own account: read, rename, change password, delete."""

from __future__ import annotations

from quart import Blueprint, make_response
from quart.typing import ResponseReturnValue

from ...models import User
from ...users import rename
from ..auth import caller_address, clear_auth_cookies, current_claims, token_required
from ..forms import form_input, model_json, no_content
from ..schemas import ChangePasswordIn, DeleteMeIn, MeOut, UpdateMeIn
from ..state import request_db, services

blueprint = Blueprint("account", __name__)


def me_out(user: User) -> MeOut:
    """The account as GET /me shows it."""
    return MeOut(
        public_id=user.public_id,
        name=user.name,
        email=user.email,
        email_verified=user.email_verified,
        created_at=user.created_at,
    )


async def change_own_password(user: User, body: ChangePasswordIn) -> None:
    """The signed-in person's password change (JSON route and account page): others sign out."""
    await services().accounts.change_password(
        request_db(),
        user,
        body.current_password,
        body.new_password,
        caller_address(),
        keep=current_claims().session_id,
    )


@blueprint.get("/me")
@token_required(scopes=["profile:read"])
async def me(user: User) -> ResponseReturnValue:
    return model_json(me_out(user))


@blueprint.patch("/me")
@token_required(scopes=["profile:write"])
async def update_me(user: User) -> ResponseReturnValue:
    body = await form_input(UpdateMeIn)
    return model_json(me_out(await rename(request_db(), user, body.name)))


@blueprint.post("/me/password")
@token_required(session_only=True)
async def change_password(user: User) -> ResponseReturnValue:
    body = await form_input(ChangePasswordIn)
    await change_own_password(user, body)
    return no_content()


@blueprint.delete("/me")
@token_required(session_only=True)
async def delete_me(user: User) -> ResponseReturnValue:
    body = await form_input(DeleteMeIn)
    await services().accounts.delete(request_db(), user, body.password, caller_address())
    response = await make_response("", 204)
    clear_auth_cookies(response)
    return response
