"""quart_auth_app: async JWT authentication on Quart. `create_app()` builds it.

Importing the package builds nothing. `quart_auth_app:app`, what hypercorn serves, stands in
for the app that `quart_auth_app.asgi` builds from the environment at its first use.
"""

from __future__ import annotations

from typing import Any

from quart import Quart

from .config import ConfigError, Settings
from .web.app import create_app
from .web.auth import current_user, token_required
from .web.sockets import receive_json

__all__ = [
    "ConfigError",
    "Settings",
    "app",
    "create_app",
    "current_user",
    "receive_json",
    "token_required",
]


class _AppFromEnvironment:
    """An ASGI app that is `quart_auth_app.asgi.app`, built when first called or looked into.

    Servers such as hypercorn look the app up in the module's namespace (no module
    `__getattr__`), so a stand-in has to be there.
    """

    _built: Quart | None = None

    def _app(self) -> Quart:
        if self._built is None:
            from .asgi import app

            self._built = app
        return self._built

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await (self._built or self._app())(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app(), name)


app: Any = _AppFromEnvironment()
