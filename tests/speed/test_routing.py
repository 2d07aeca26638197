"""Route matching: the static-route cache answers as werkzeug would and leaves no garbage."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from quart import Quart

from quart_auth_app.speed.routing import StaticRouteApp, StaticRouteMatcher

from ..conftest import SQLITE_ONLY, bearer


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """Everything the cyclic collector finds unreachable while the test runs, kept for counting."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()


@SQLITE_ONLY  # with accelerations (sqlite-plain runs werkzeug's matcher)
async def test_protected_requests_leave_no_cyclic_garbage(
    client: Any, signed_in: Any, saved_garbage: list[Any]
) -> None:
    # Werkzeug's matcher left a self-referencing closure behind on every request; with it,
    # 50 requests left ~450 objects for the collector (and its pauses under load).
    for _ in range(3):  # first requests build what lives for good (compiled rules, caches)
        await client.get("/dashboard", headers=bearer(signed_in.tokens.access_token))
    gc.collect()
    saved_garbage.clear()
    for _ in range(50):
        response = await client.get("/dashboard", headers=bearer(signed_in.tokens.access_token))
        assert response.status_code == 200
    gc.collect()
    kinds = sorted({type(o).__qualname__ for o in saved_garbage})
    assert len(saved_garbage) < 50, kinds


def build_app() -> Quart:
    app = StaticRouteApp(__name__)

    @app.get("/static-route")
    async def static_route() -> str:
        return "static"

    @app.get("/items/<int:item_id>")
    async def item(item_id: int) -> str:
        return f"item {item_id}"

    @app.get("/folder/")
    async def folder() -> str:
        return "folder"

    return app


async def test_cached_routes_answer_like_werkzeug() -> None:
    client = build_app().test_client()
    for _ in range(2):  # the second pass is answered from the cache
        assert (await client.get("/static-route")).status_code == 200
        wrong_method = await client.post("/static-route")
        assert wrong_method.status_code == 405
        assert "GET" in wrong_method.headers["Allow"]
        assert await (await client.get("/items/7")).get_data(as_text=True) == "item 7"
        assert (await client.get("/items/seven")).status_code == 404
        assert (await client.get("/folder")).status_code == 308
        assert (await client.get("/nowhere")).status_code == 404


async def test_a_rule_added_later_is_matched() -> None:
    app = build_app()
    adapter = app.url_map.bind("localhost")
    assert adapter.match("/static-route")[0] == "static_route"

    app.add_url_rule("/static-route", "newer", lambda: "newer", methods=["POST"])
    assert app.url_map.bind("localhost").match("/static-route", method="POST")[0] == "newer"


def test_the_matcher_in_use_is_the_caching_one() -> None:
    # Relies on werkzeug's private Map._matcher: fails loudly if werkzeug renames or drops it.
    app = build_app()
    assert isinstance(app.url_map._matcher, StaticRouteMatcher)
