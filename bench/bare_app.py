"""The ceiling: a route that does nothing, on the same server configuration as the real app."""

from __future__ import annotations

from quart import Quart, jsonify
from quart.typing import ResponseReturnValue

app = Quart(__name__)


@app.get("/bare")
async def bare() -> ResponseReturnValue:
    return jsonify({"message": "ok"})
