"""Operational routes: health."""

from __future__ import annotations

import logging

from quart import Blueprint, jsonify
from quart.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..state import request_db

blueprint = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@blueprint.get("/healthz")
async def healthz() -> ResponseReturnValue:
    try:
        await request_db().execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError):
        log.warning("health check: database unreachable")
        return jsonify({"status": "unavailable"}), 503
    return jsonify({"status": "ok"})
