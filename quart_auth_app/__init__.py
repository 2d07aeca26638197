"""quart_auth_app: async JWT authentication on Quart. `create_app()` builds it; `app` serves it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quart import Quart

from . import db, mail_flows, openapi, security, services
from .application import App
from .auth import token_required
from .config import ConfigError, Settings, load_settings
from .handlers import register_error_handlers
from .memory import tune_collector
from .schema import ensure_schema
from .views import register_views

__all__ = ["ConfigError", "Settings", "app", "create_app", "token_required"]

log = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parent
CLEANUP_INTERVAL_SECONDS = 600
CLEANUP_MAX_BATCHES = 100


def template_folder() -> Path:
    """Templates ship inside the wheel; a source checkout keeps them at the top level."""
    bundled = PACKAGE_DIR / "templates"
    return bundled if bundled.is_dir() else PACKAGE_DIR.parent / "templates"


def create_app(config: Mapping[str, Any] | None = None) -> Quart:
    """Build the app from the environment, with `config` (by variable name) taking precedence."""
    settings = load_settings(overrides=config)
    app = App(__name__, template_folder=str(template_folder()), static_folder="static")
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_body_bytes,
        MAX_FORM_PARTS=200,
        BODY_TIMEOUT=15,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        JSON_SORT_KEYS=False,
    )
    app.extensions["settings"] = settings
    db.init_app(app, settings)
    services.init_app(app, services.build_services(settings))
    _init_lifecycle(app, settings)
    security.init_app(app)
    register_error_handlers(app)
    register_views(app)
    openapi.init_app(app)  # after the views: it documents them
    return app


def _init_lifecycle(app: Quart, settings: Settings) -> None:
    @app.before_serving
    async def prepare() -> None:
        if db.is_sqlite(settings.database_url):
            await ensure_schema(db.app_engine(app), settings.instance_path)
        app.extensions["cleanup_task"] = asyncio.create_task(_cleanup_forever(app))
        tune_collector()

    @app.after_serving
    async def stop_cleanup() -> None:
        task: asyncio.Task[None] | None = app.extensions.pop("cleanup_task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _cleanup_forever(app: Quart) -> None:
    """Delete expired token rows in bounded batches, now and then, for as long as the app runs."""
    sessions = app.extensions["services"].sessions
    while True:
        await asyncio.sleep(CLEANUP_INTERVAL_SECONDS)
        with contextlib.suppress(Exception):
            async with app.extensions["db_sessions"]() as session:
                for _ in range(CLEANUP_MAX_BATCHES):
                    gone = await sessions.cleanup(session) + await mail_flows.cleanup(session)
                    if gone == 0:
                        break


def _app_from_environment() -> Quart:
    try:
        return create_app()
    except ConfigError as error:
        print(f"quart_auth_app: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


app = _app_from_environment()
