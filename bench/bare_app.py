"""The ceiling: a route that does nothing, on the same server configuration as the real app.

It uses the real app's Quart class and collector settings (speed/), so the ceiling moves with
any framework-level speed-up and the ratios measure only what the app's routes add.
"""

from __future__ import annotations

import os

from quart import Quart, jsonify
from quart.typing import ResponseReturnValue

from quart_auth_app import speed
from quart_auth_app.web.finish import FinishRequests

# bench/run.py --plain sets ACCELERATIONS=false for both servers: the ceiling follows the app.
ACCELERATED = os.environ.get("ACCELERATIONS", "true") != "false"
app = (speed.app_class() if ACCELERATED else Quart)(__name__)
app.asgi_app = FinishRequests(app.asgi_app)  # type: ignore[method-assign]


@app.before_serving
async def tune() -> None:
    if ACCELERATED:
        speed.tune_worker()


@app.get("/bare")
async def bare() -> ResponseReturnValue:
    return jsonify({"message": "ok"})
