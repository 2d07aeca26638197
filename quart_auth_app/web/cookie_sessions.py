"""Quart's signed-cookie session (flash messages, the remembered address), its signer kept.

Quart opens the session on every request, API calls included, and builds a new itsdangerous
serializer each time; this one builds it again only when the keys change.
"""

from __future__ import annotations

from itsdangerous import URLSafeTimedSerializer
from quart import Quart
from quart.sessions import SecureCookieSessionInterface


class SignedCookieSessions(SecureCookieSessionInterface):
    """SecureCookieSessionInterface with its serializer built once per set of keys."""

    def __init__(self) -> None:
        self._keys: tuple[object, ...] = ()
        self._signer: URLSafeTimedSerializer | None = None

    def get_signing_serializer(self, app: Quart) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if self._signer is None or keys != self._keys:
            self._signer = super().get_signing_serializer(app)
            self._keys = keys
        return self._signer
