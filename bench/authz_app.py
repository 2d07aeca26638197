"""The app with one role-gated route of a developer's own, for bench/authz.py.

`GET /reports` needs the `auditor` role (token_required(roles=...)); it answers as /dashboard
does, so the two differ only by the role check.
"""

from __future__ import annotations

from quart import jsonify
from quart.typing import ResponseReturnValue

from quart_auth_app import create_app, token_required
from quart_auth_app.models import User

app = create_app()


@app.get("/reports")
@token_required(roles=["auditor"])
async def reports(user: User) -> ResponseReturnValue:
    return jsonify({"message": f"Welcome {user.name}! You are logged in."})
