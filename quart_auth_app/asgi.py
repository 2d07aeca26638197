"""The served app: `hypercorn quart_auth_app.asgi:app` (or `quart_auth_app:app`).

Importing this module builds the app from the environment; a configuration error ends the
process with one line naming the variable and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys

from quart import Quart

from .config import ConfigError
from .web.app import create_app


def app_from_environment() -> Quart:
    """create_app() for a server process: configuration errors exit with one line."""
    try:
        return create_app()
    except ConfigError as error:
        print(f"quart-auth-app: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


app = app_from_environment()
