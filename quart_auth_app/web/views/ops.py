"""Operational routes: health."""

from __future__ import annotations

import asyncio
import logging

from quart import Blueprint, jsonify
from quart.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from ...migrate import UPGRADE_COMMAND, schema_behind, schema_revision
from ...services import Services
from ..http import UNAVAILABLE_HEADERS
from ..state import services

blueprint = Blueprint("ops", __name__)
log = logging.getLogger(__name__)

SCHEMA_BEHIND = f"schema behind: run {UPGRADE_COMMAND}"


@blueprint.get("/healthz")
async def healthz() -> ResponseReturnValue:
    """200 only when the database answers at this code's schema and Redis (if used) answers."""
    current = services()
    checks = {"database": _database(current)}
    if current.redis is not None:
        checks["redis"] = _redis(current)
    names = list(checks)
    results = dict(zip(names, await asyncio.gather(*checks.values()), strict=True))
    if all(result == "ok" for result in results.values()):
        return jsonify({"status": "ok"})
    log.warning("health check: %s", ", ".join(f"{k} {v}" for k, v in results.items()))
    return jsonify({"status": "unavailable", "checks": results}), 503, UNAVAILABLE_HEADERS


async def _database(current: Services) -> str:
    # One query when all is well: the revision row answers "reachable" and "migrated" at once.
    try:
        async with current.engine.connect() as connection:
            found = await schema_revision(connection)
    except (SQLAlchemyError, OSError):
        return "unreachable"
    return SCHEMA_BEHIND if schema_behind(found) else "ok"


async def _redis(current: Services) -> str:
    from redis.exceptions import RedisError  # only deployments with Redis load the client

    assert current.redis is not None
    try:
        await current.redis.ping()
    except (RedisError, OSError):
        return "unreachable"
    return "ok"
