"""Thin HTTP handlers, grouped by audience and resource."""

from __future__ import annotations

from quart import Quart

from . import account, ops, pages, tokens


def register_views(app: Quart) -> None:
    """Attach every blueprint."""
    for module in (pages, tokens, account, ops):
        app.register_blueprint(module.blueprint)
