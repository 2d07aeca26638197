"""The ceiling: a route that does nothing, on the same server configuration as the real app.

It uses the real app's Quart subclass and collector settings, so the ceiling moves with any
framework-level speed-up and the ratios measure only what the app's routes add.
"""

from __future__ import annotations

from quart import jsonify
from quart.typing import ResponseReturnValue

from quart_auth_app.application import App
from quart_auth_app.memory import tune_collector

app = App(__name__)
app.before_serving(tune_collector)


@app.get("/bare")
async def bare() -> ResponseReturnValue:
    return jsonify({"message": "ok"})
