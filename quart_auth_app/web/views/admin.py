"""The admin API (SPEC §10): search users, read one, change roles, activity or name, sign out."""

from __future__ import annotations

from quart import Blueprint, request
from quart.typing import ResponseReturnValue

from ... import admin
from ...errors import InvalidInput
from ...models import User
from ...permissions import ADMIN
from ..auth import token_required
from ..forms import form_input, model_json
from ..schemas import AdminUserIn, AdminUserOut, AdminUsersOut, AdminUsersQuery, parse_input
from ..state import request_db, services

blueprint = Blueprint("admin", __name__)

# Every admin route: the admin role, and a personal access token must carry the admin scope.
admin_required = token_required(roles=[ADMIN], scopes=[ADMIN])
# Admin writes need a recent sign-in as well (SPEC §11): a stolen session cannot use them for long.
admin_write = token_required(roles=[ADMIN], scopes=[ADMIN], fresh=True)


def admin_user_out(user: User) -> AdminUserOut:
    """A user as the admin API shows them."""
    return AdminUserOut(
        public_id=user.public_id,
        name=user.name,
        email=user.email,
        email_verified=user.email_verified,
        is_active=user.is_active,
        roles=sorted(user.roles),
        created_at=user.created_at,
    )


def search_query() -> AdminUsersQuery:
    """The query string of a search, validated (400 with a reason per parameter)."""
    return parse_input(AdminUsersQuery, request.args.to_dict())


async def search(actor: User, query: AdminUsersQuery) -> admin.UserPage:
    """One page of users for the admin API or the admin page; recorded in the audit log."""
    key = admin.cursor_key(services().settings.secret_key)
    page = await admin.search_users(request_db(), key, query.q, query.limit, query.cursor)
    admin.record(actor, "search_users", None, {"q": query.q, "found": len(page.users)})
    return page


def requested_change(body: AdminUserIn) -> admin.Change:
    """The change a PATCH body asks for; at least one field."""
    if body.roles is None and body.is_active is None and body.name is None:
        reason = "Give at least one of roles, is_active, name"
        raise InvalidInput(reason, errors={"body": reason})
    roles = None if body.roles is None else frozenset(body.roles)
    return admin.Change(roles=roles, is_active=body.is_active, name=body.name)


async def change(actor: User, public_id: str, body: AdminUserIn) -> User:
    """Apply a change (JSON route and admin page alike)."""
    return await admin.update_user(
        request_db(), services().sessions, actor, public_id, requested_change(body)
    )


@blueprint.get("/admin/users")
@admin_required
async def list_users(actor: User) -> ResponseReturnValue:
    page = await search(actor, search_query())
    users = [admin_user_out(user) for user in page.users]
    return model_json(AdminUsersOut(users=users, next_cursor=page.next_cursor))


@blueprint.get("/admin/users/<public_id>")
@admin_required
async def get_user(actor: User, public_id: str) -> ResponseReturnValue:
    user = await admin.get_user(request_db(), public_id)
    admin.record(actor, "get_user", user)
    return model_json(admin_user_out(user))


@blueprint.patch("/admin/users/<public_id>")
@admin_write
async def update_user(actor: User, public_id: str) -> ResponseReturnValue:
    body = await form_input(AdminUserIn)
    return model_json(admin_user_out(await change(actor, public_id, body)))


@blueprint.post("/admin/users/<public_id>/logout")
@admin_write
async def logout_user(actor: User, public_id: str) -> ResponseReturnValue:
    await admin.logout_user(request_db(), services().sessions, actor, public_id)
    return {"message": "Every session of the user has ended."}
