"""Thin HTTP handlers, grouped by audience and resource."""

from __future__ import annotations

from quart import Quart

from . import (
    access_tokens,
    account,
    account_page,
    admin,
    admin_page,
    live,
    mfa,
    mfa_page,
    ops,
    pages,
    recovery,
    tokens,
)


def register_views(app: Quart) -> None:
    """Attach every blueprint."""
    for module in (
        pages,
        tokens,
        account,
        access_tokens,
        account_page,
        mfa,
        mfa_page,
        admin,
        admin_page,
        recovery,
        ops,
        live,
    ):
        app.register_blueprint(module.blueprint)
