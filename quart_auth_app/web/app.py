"""create_app(): the Quart app assembled from its parts. Building it opens nothing.

The engine, pools, threads and clients (services.py) are opened when the app starts serving
and closed when it stops; the schema of the embedded SQLite database is migrated first, and a
PostgreSQL schema that is missing or behind refuses the start (StartRefused).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quart import Quart
from sqlalchemy.exc import SQLAlchemyError

from .. import outbox, recovery
from ..config import Settings, load_settings
from ..db import is_sqlite
from ..migrate import (
    HEAD_REVISION,
    SchemaProblem,
    behind_message,
    ensure_schema,
    schema_behind,
    schema_revision,
)
from ..services import Services, open_services
from ..tokens import KeySet, TokenService
from . import errors, mail_jobs, openapi, security, state
from .cookie_sessions import SignedCookieSessions
from .finish import FinishRequests
from .hosts import RefuseBadHosts
from .refusals import WholeRefusals
from .views import register_views

log = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parent.parent
CLEANUP_INTERVAL_SECONDS = 600
CLEANUP_MAX_BATCHES = 100
# How long the start-up schema check waits for PostgreSQL before serving without it.
START_CHECK_SECONDS = 5


def template_folder() -> Path:
    """Templates ship inside the wheel; a source checkout keeps them at the top level."""
    bundled = PACKAGE_DIR / "templates"
    return bundled if bundled.is_dir() else PACKAGE_DIR.parent / "templates"


def _app_class(settings: Settings) -> type[Quart]:
    if settings.accelerations:
        from .. import speed

        return speed.app_class()
    return Quart


def create_app(config: Mapping[str, Any] | None = None) -> Quart:
    """Build the app from the environment, with `config` (by variable name) taking precedence."""
    settings = load_settings(overrides=config)
    keys = KeySet.from_settings(settings)
    TokenService(settings, keys)  # a key PyJWT would refuse is a start-up error, not a 500
    app = _app_class(settings)(
        "quart_auth_app", template_folder=str(template_folder()), static_folder="static"
    )
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
    app.session_interface = SignedCookieSessions()
    # Outermost: a request with an unusable Host is answered before Quart binds its URL map.
    app.asgi_app = RefuseBadHosts(WholeRefusals(FinishRequests(app.asgi_app)))  # type: ignore[method-assign]
    _init_lifecycle(app, settings, keys)
    state.init_app(app)
    security.refuse_unknown_hosts(app, settings.allowed_hosts)  # first of the request hooks
    security.init_app(app)
    errors.register_error_handlers(app)
    register_views(app)
    openapi.init_app(app)  # after the views: it documents them
    return app


def _init_lifecycle(app: Quart, settings: Settings, keys: KeySet) -> None:
    @app.before_serving
    async def open_everything() -> None:
        services = open_services(settings, keys)
        try:
            await _prepare_schema(services, settings)
        except StartRefused:
            await services.close()
            raise
        app.extensions["services"] = services
        app.extensions["mail_sender"] = _start_sender(app, services)
        app.extensions["cleanup_task"] = asyncio.create_task(_cleanup_forever(services))
        app.extensions["socket_tasks"] = _watch_sockets(services)
        if settings.accelerations:
            from .. import speed

            speed.tune_worker()

    @app.after_serving
    async def close_everything() -> None:
        sender: outbox.MailSender | None = app.extensions.pop("mail_sender", None)
        if sender is not None:
            await sender.stop()  # first: it still needs the database to release its mails
        tasks: list[asyncio.Task[None]] = app.extensions.pop("socket_tasks", [])
        task: asyncio.Task[None] | None = app.extensions.pop("cleanup_task", None)
        for running in [*tasks, *([task] if task else [])]:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        services: Services | None = app.extensions.pop("services", None)
        if services is not None:
            await services.close()


def _start_sender(app: Quart, services: Services) -> outbox.MailSender:
    sender = outbox.MailSender(
        services.db_sessions,
        services.mailer,
        services.throttle,
        mail_jobs.composer(app),
        services.settings,
    )
    sender.start()
    return sender


class StartRefused(Exception):
    """The app must not serve as deployed; the message is the one line an operator reads.

    create_app() callers get it from the start (Quart: a lifespan failure); the server process
    (quart_auth_app.asgi) prints the line and exits with status 2 instead of a traceback.
    """


async def _prepare_schema(services: Services, settings: Settings) -> None:
    """Migrate the embedded SQLite database; refuse a PostgreSQL one whose schema is behind."""
    if is_sqlite(settings.database_url):
        try:
            await ensure_schema(services.engine, settings.instance_path)
        except SchemaProblem as problem:
            raise StartRefused(str(problem)) from None
        except (SQLAlchemyError, OSError) as error:
            raise StartRefused(
                f"DATABASE_URL: cannot migrate the database: {_first_line(error)}"
            ) from None
        return
    try:
        async with asyncio.timeout(START_CHECK_SECONDS), services.engine.connect() as connection:
            found = await schema_revision(connection)
    except (SQLAlchemyError, OSError, TimeoutError) as error:
        # Temporarily down, perhaps: serving anyway lets the app recover by itself once the
        # database answers (requests answer 503 until then, /healthz says why).
        log.warning(
            "database unreachable at start (%s): serving; requests that need it answer 503",
            type(error).__name__,
        )
        return
    if schema_behind(found):
        raise StartRefused(behind_message(found))
    if found != HEAD_REVISION:
        log.warning("database schema %s is newer than this code's %s", found, HEAD_REVISION)


def _first_line(error: BaseException) -> str:
    """An error in one line, without SQL parameters (they may hold password hashes)."""
    cause = getattr(error, "orig", None) or error
    return f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0]}"


def _watch_sockets(services: Services) -> list[asyncio.Task[None]]:
    """The open websockets' liveness check, and with Redis the feed of pushed revocations."""
    tasks = [asyncio.create_task(services.sockets.run())]
    if services.feed is not None:
        tasks.append(asyncio.create_task(services.feed.run(services.sockets.revoked)))
    return tasks


async def _cleanup_forever(services: Services) -> None:
    """Delete expired token rows and old failed mails in bounded batches, now and then."""
    while True:
        await asyncio.sleep(CLEANUP_INTERVAL_SECONDS)
        with contextlib.suppress(Exception):
            async with services.db_sessions() as db:
                for _ in range(CLEANUP_MAX_BATCHES):
                    gone = (
                        await services.sessions.cleanup(db)
                        + await recovery.cleanup(db)
                        + await outbox.cleanup(db)
                    )
                    if gone == 0:
                        break
