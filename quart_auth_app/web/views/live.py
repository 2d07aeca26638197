"""Websocket routes (SPEC §12): the dashboard's live socket."""

from __future__ import annotations

from quart import Blueprint, websocket

from ...models import User
from ..auth import token_required
from ..sockets import receive_json

blueprint = Blueprint("live", __name__)


@blueprint.websocket("/ws/dashboard")
@token_required
async def dashboard_socket(user: User) -> None:
    await websocket.send_json({"message": f"Welcome {user.name}! You are logged in."})
    while True:
        message = await receive_json()
        await websocket.send_json({"echo": message, "public_id": user.public_id})
