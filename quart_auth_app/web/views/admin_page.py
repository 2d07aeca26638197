"""The admin page for people in a browser: search users, deactivate or reactivate, edit roles."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, render_template
from quart.typing import ResponseReturnValue

from ...models import User
from ..forms import form_input
from ..schemas import AdminUserIn, AdminUsersQuery
from .account_page import done
from .admin import admin_required, admin_write, change, search, search_query

blueprint = Blueprint("admin_page", __name__)

TEMPLATE = "admin.html"


async def page_context(actor: User, query: AdminUsersQuery, target: str = "") -> dict[str, Any]:
    """What admin.html needs; `target` is the user whose form an error belongs to."""
    page = await search(actor, query)
    return {"user": actor, "query": query, "page": page, "target": target}


def back_to(query: str) -> str:
    """The admin page again, on the search the form was sent from."""
    return f"/admin?{urlencode({'q': query})}" if query else "/admin"


@blueprint.get("/admin")
@admin_required
async def admin_page(actor: User) -> ResponseReturnValue:
    query = search_query()
    return await render_template(TEMPLATE, values={}, **await page_context(actor, query))


@blueprint.post("/admin/users/<public_id>/active")
@admin_write
async def set_active(actor: User, public_id: str) -> ResponseReturnValue:
    return await _change(actor, public_id, ("is_active",))


@blueprint.post("/admin/users/<public_id>/roles")
@admin_write
async def set_roles(actor: User, public_id: str) -> ResponseReturnValue:
    return await _change(actor, public_id, ("roles",))


async def _change(actor: User, public_id: str, fields: tuple[str, ...]) -> ResponseReturnValue:
    # The page is built before the body is read: a refused form shows it again, with the reason.
    query = search_query()
    body = await form_input(AdminUserIn, TEMPLATE, **await page_context(actor, query, public_id))
    only = AdminUserIn(**{name: getattr(body, name) for name in fields})
    user = await change(actor, public_id, only)
    if "is_active" in fields:
        word = "reactivated" if user.is_active else "deactivated and signed out everywhere"
        return await done(f"{user.name} ({user.email}) is {word}.", back_to(query.q))
    roles = ", ".join(sorted(user.roles)) or "no roles"
    return await done(f"{user.name} ({user.email}) now has {roles}.", back_to(query.q))
