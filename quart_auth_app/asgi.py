"""The served app: `hypercorn quart_auth_app.asgi:app` (or `quart_auth_app:app`).

Importing this module builds the app from the environment; a configuration error ends the
process with one line naming the variable and exit status 2, never a traceback. So does a
refusal to start (web.app.StartRefused: a PostgreSQL schema behind, a read-only instance
folder). This app is for server processes; tests and embedding call create_app(), whose
refusal is an exception.
"""

from __future__ import annotations

import logging
import os
import sys

from quart import Quart
from quart.signals import got_serving_exception

from .config import ConfigError
from .web.access_line import AccessLine
from .web.app import StartRefused, create_app

PROG = "quart-auth-app"


def app_from_environment() -> Quart:
    """create_app() for a server process: configuration errors exit with one line."""
    try:
        app = create_app()
    except ConfigError as error:
        print(f"{PROG}: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    got_serving_exception.connect(_exit_on_refusal, app)
    return app


async def _exit_on_refusal(_app: Quart, exception: BaseException) -> None:
    # Quart calls this for an exception at start, before it logs it with a traceback. The
    # process ends here, with the line alone: servers each treat a failed start their own way
    # (hypercorn's worker prints a traceback; a SystemExit left in its task is reported as
    # "never retrieved"), and a worker that refuses to start has nothing to finish.
    if not isinstance(exception, StartRefused):
        return
    print(f"{PROG}: {exception}", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(2)


app = app_from_environment()
# What `serve --server granian` serves: the app with its access line (web/access_line.py).
app_with_access_line = AccessLine(app)
