"""SPEC §3: who is answered with pages. wants_html() skips parsing Accept when no text/ range
could prefer HTML; its answer must stay werkzeug's full negotiation for every header."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from quart import Quart
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from quart_auth_app.web.http import wants_html

# Media ranges and qualities browsers and API clients send, and some odd ones.
RANGES = [
    "*/*",
    "text/html",
    "TEXT/HTML",
    "text/*",
    "text/plain",
    "application/json",
    "application/*",
    "application/xhtml+xml",
    "image/webp",
    "html",
]
QUALITIES = ["", ";q=0", ";q=0.1", ";q=0.5", ";q=0.9", ";q=1"]


def negotiated(accept: str | None) -> bool:
    parsed = parse_accept_header(accept, MIMEAccept)
    return parsed.best_match(["application/json", "text/html"]) == "text/html"


async def answered(app: Quart, accept: str | None) -> bool:
    headers = {} if accept is None else {"Accept": accept}
    async with app.test_request_context("/dashboard", headers=headers):
        return wants_html()


BROWSERS = [
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "TEXT/HTML",
    "text/*",
]
API_CLIENTS = [None, "", "*/*", "application/json", "application/json, text/html;q=0.5"]


async def test_browsers_get_pages_and_api_clients_json(app: Quart) -> None:
    assert [await answered(app, accept) for accept in BROWSERS] == [True] * len(BROWSERS)
    assert [await answered(app, accept) for accept in API_CLIENTS] == [False] * len(API_CLIENTS)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(RANGES), st.sampled_from(QUALITIES)), max_size=4).map(
        lambda items: ", ".join(f"{media}{quality}" for media, quality in items)
    )
)
def test_the_shortcut_agrees_with_full_negotiation(accept: str) -> None:
    app = Quart(__name__)
    assert asyncio.run(answered(app, accept)) == negotiated(accept), repr(accept)
