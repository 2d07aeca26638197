"""Thin HTTP handlers, grouped by audience and resource."""

from __future__ import annotations

from quart import Quart

from . import account, browser, ops, pages, recovery, tokens


def register_views(app: Quart) -> None:
    """Attach every blueprint."""
    for module in (pages, tokens, account, browser, recovery, ops):
        app.register_blueprint(module.blueprint)
