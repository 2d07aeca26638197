"""Client input that used to give a 500 (issue 16 §3): `next` targets, lone surrogates, Host.

Each is answered with a redirect to a safe place or a clean 400, and the redirect is built before
the write it follows: a login whose answer cannot be built starts no session, a refresh uses up
no token.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest
from quart import Quart
from sqlalchemy import func, select

from quart_auth_app.models import LoginSession
from quart_auth_app.testing import DEFAULT_PASSWORD, SignedIn, db_session
from quart_auth_app.web.auth import ACCESS_COOKIE, REFRESH_COOKIE
from quart_auth_app.web.views import pages, tokens

from ..conftest import BROWSER, bearer

ANN = {"email": "ann@example.com", "password": DEFAULT_PASSWORD}


async def live_sessions(app: Quart) -> int:
    async with db_session(app) as db:
        query = select(func.count()).where(LoginSession.revoked_at.is_(None))
        return int((await db.execute(query.select_from(LoginSession))).scalar_one())


# next= on POST /login ------------------------------------------------------------------------

ALLOWED_NEXT = ["/ok/path?x=1", "/account", "/caf%C3%A9#top", "/me/sessions?a=1&b=two"]
REFUSED_NEXT = [
    "\x00",
    "\x0b",
    "\x0c",
    "/a\x00b",
    "/a\x0bb",
    "/a\x0cb",
    "/a\x1bb",
    "/a\x7fb",
    "/a\r\nSet-Cookie: x=1",
    "/a%0Cb",
    "/a%00b",
    "/a%zz",
    "//evil.example",
    "/\\evil",
    "/%5Cevil",
    "/%2F/evil.example",
    "https://evil.example",
    "javascript:alert(1)",
    "/a b",
    "/caf\u00e9",
    "/" + "a" * 3000,
]
# Only JSON can carry a lone surrogate (a form or query string cannot encode it).
JSON_ONLY_NEXT = ["/a\ud800", "\udfff"]
HIDDEN_NEXT = re.compile(r'name="next" value="([^"]*)"')


def expected_target(target: str) -> str:
    return target if target in ALLOWED_NEXT else "/dashboard"


def assert_clean_headers(response: Any) -> None:
    for name, value in response.headers.items():
        assert value.isascii() and value.isprintable(), (name, value)


def new_cookies(response: Any) -> dict[str, str]:
    found = {}
    for header in response.headers.getlist("Set-Cookie"):
        name, _, rest = header.partition("=")
        found[name] = rest.split(";", 1)[0]
    return found


def targets(where: str) -> list[str]:
    return ALLOWED_NEXT + REFUSED_NEXT + (JSON_ONLY_NEXT if where == "json" else [])


def sending(where: str, target: str, body: dict[str, str]) -> dict[str, Any]:
    """Client keyword arguments that carry `next` in the form, the JSON body or the query."""
    if where == "query":
        return {"form": body, "query_string": {"next": target}}
    return {where: {**body, "next": target}}


@pytest.mark.parametrize("where", ["form", "json", "query"])
async def test_browser_login_goes_only_to_local_paths(app: Quart, user: Any, where: str) -> None:
    for count, target in enumerate(targets(where), start=1):
        client = app.test_client()
        response = await client.post("/login", headers=BROWSER, **sending(where, target, ANN))
        assert response.status_code == 302, repr(target)
        assert response.headers["Location"] == expected_target(target), repr(target)
        assert_clean_headers(response)
        access = new_cookies(response)[ACCESS_COOKIE]
        assert (await client.get("/dashboard", headers=BROWSER)).status_code == 200, "cookie"
        assert (
            await app.test_client().get("/dashboard", headers=bearer(access))
        ).status_code == 200
        assert await live_sessions(app) == count, "one login, one session"


async def test_tutorial_form_login_never_fails_on_next(app: Quart, user: Any) -> None:
    # A form without Accept: JSON tokens here, or the tutorial's redirect (SPEC §3, kind 2).
    for target in ALLOWED_NEXT + REFUSED_NEXT:
        response = await app.test_client().post("/login", form={**ANN, "next": target})
        assert response.status_code in (200, 302), repr(target)
        assert_clean_headers(response)
        if response.status_code == 302:
            assert response.headers["Location"] == expected_target(target)


async def test_a_login_whose_redirect_cannot_be_built_starts_no_session(
    app: Quart, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "redirect", unbuildable)
    response = await app.test_client().post("/login", form=ANN, headers=BROWSER)
    assert response.status_code == 500
    assert await live_sessions(app) == 0
    monkeypatch.undo()
    assert (await app.test_client().post("/login", form=ANN, headers=BROWSER)).status_code == 302


def unbuildable(*_args: Any, **_kwargs: Any) -> Any:
    raise ValueError("this response cannot be built")


# next= on the browser's POST /token/refresh --------------------------------------------------


def refresh_client(app: Quart, refresh_token: str) -> Any:
    client = app.test_client()
    client.set_cookie("localhost", REFRESH_COOKIE, refresh_token)
    return client


@pytest.mark.parametrize("where", ["form", "json", "query"])
async def test_browser_refresh_goes_only_to_local_paths(
    app: Quart, signed_in: SignedIn, where: str
) -> None:
    refresh_token = signed_in.tokens.refresh_token
    for target in targets(where):
        client = refresh_client(app, refresh_token)
        response = await client.post(
            "/token/refresh", headers=BROWSER, **sending(where, target, {})
        )
        assert response.status_code == 302, repr(target)
        assert response.headers["Location"] == expected_target(target), repr(target)
        assert_clean_headers(response)
        refresh_token = new_cookies(response)[REFRESH_COOKIE]  # the next turn uses the new one
    assert await live_sessions(app) == 1, "the family lives through every refresh"
    last = await app.test_client().post("/token/refresh", json={"refresh_token": refresh_token})
    assert last.status_code == 200


async def test_a_refresh_whose_redirect_cannot_be_built_keeps_its_token(
    app: Quart, signed_in: SignedIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "redirect", unbuildable)
    client = refresh_client(app, signed_in.tokens.refresh_token)
    assert (await client.post("/token/refresh", headers=BROWSER)).status_code == 500
    monkeypatch.undo()
    # Not used up: the retry rotates it, outside any replay window, and the family lives.
    retry = await client.post("/token/refresh", headers=BROWSER)
    assert retry.status_code == 302 and retry.headers["Location"] == "/dashboard"
    fresh = new_cookies(retry)[ACCESS_COOKIE]
    assert (await client.get("/dashboard", headers=bearer(fresh))).status_code == 200
    assert await live_sessions(app) == 1


# next= planted into the login page ---------------------------------------------------------


async def test_the_login_page_carries_only_a_safe_next(client: Any) -> None:
    for target in ALLOWED_NEXT + REFUSED_NEXT:
        page = await client.get("/login", query_string={"next": target}, headers=BROWSER)
        assert page.status_code == 200
        hidden = HIDDEN_NEXT.findall(await page.get_data(as_text=True))
        assert [html.unescape(value) for value in hidden] == [
            target if target in ALLOWED_NEXT else ""
        ], repr(target)


async def test_a_refused_login_keeps_only_a_safe_next(client: Any, user: Any) -> None:
    wrong = {**ANN, "password": "not the password"}
    for target, kept in (("/account", "/account"), ("/a\x0cb", ""), ("//evil.example", "")):
        page = await client.post("/login", form={**wrong, "next": target}, headers=BROWSER)
        assert page.status_code == 401
        assert HIDDEN_NEXT.findall(await page.get_data(as_text=True)) == [kept]


async def test_signed_out_browsers_are_sent_to_login_with_a_safe_next(client: Any) -> None:
    for path in ("/account?tab=1", "/account?x=caf%C3%A9"):
        kept = await client.get(path, headers=BROWSER)
        assert kept.headers["Location"] == f"/login?next={quote(path, safe='')}"
        page = await client.get(kept.headers["Location"], headers=BROWSER)
        assert HIDDEN_NEXT.findall(await page.get_data(as_text=True)) == [path]
    for query in ("tab=a%0Cb", "tab=%5C%5Cevil", "x=a%zz", "x=%1B"):
        dropped = await client.get(f"/account?{query}", headers=BROWSER)
        assert dropped.status_code == 302 and dropped.headers["Location"] == "/login", query


# Lone surrogates in JSON, re-rendered as a page ----------------------------------------------

SURROGATE = "\ud800"
NEW_PASSWORD = "correct horse battery"
# (route, body): each body carries one lone surrogate in one field.
ANONYMOUS_FORMS = [
    ("/login", {"email": SURROGATE, "password": "x"}),
    ("/login", {"email": "ann@example.com", "password": SURROGATE}),
    ("/login", {**ANN, "next": SURROGATE, "email": "a" + SURROGATE}),
    ("/signup", {"name": SURROGATE, "email": "bob@example.com", "password": NEW_PASSWORD}),
    ("/signup", {"name": "Bob", "email": SURROGATE + "@example.com", "password": NEW_PASSWORD}),
    ("/signup", {"name": "Bob", "email": "bob@example.com", "password": SURROGATE * 9}),
    ("/password/forgot", {"email": SURROGATE}),
    ("/password/reset", {"token": SURROGATE, "new_password": NEW_PASSWORD}),
    ("/password/reset", {"token": "abc", "new_password": SURROGATE * 9}),
    ("/verify", {"token": SURROGATE}),
    ("/verify/request", {"email": SURROGATE}),
]
ACCOUNT_FORMS = [
    ("/account/name", {"name": SURROGATE}),
    ("/account/password", {"current_password": SURROGATE, "new_password": NEW_PASSWORD}),
    ("/account/password", {"current_password": DEFAULT_PASSWORD, "new_password": SURROGATE * 9}),
    ("/account/delete", {"password": SURROGATE}),
]
JSON = {"Content-Type": "application/json"}


def raw_json(body: dict[str, str]) -> bytes:
    # json.dumps escapes the surrogate as "\ud800", which is what a hostile client sends.
    return json.dumps(body).encode()


def field_of(body: dict[str, str]) -> str:
    return next(name for name, value in body.items() if SURROGATE in value and name != "next")


async def assert_surrogate_refused(
    post: Callable[..., Awaitable[Any]], route: str, body: Any
) -> None:
    page = await post(route, data=raw_json(body), headers={**BROWSER, **JSON})
    assert page.status_code == 400, (route, body)
    assert page.headers["Content-Type"].startswith("text/html")
    text = await page.get_data(as_text=True)
    assert "invalid characters" in text
    for name, value in body.items():
        if "password" not in name and value.isascii():  # what can be shown again, is
            assert f'value="{html.escape(value)}"' in text, name
    answer = await post(route, data=raw_json(body), headers=JSON)
    assert answer.status_code == 400
    assert field_of(body) in (await answer.get_json())["errors"]


@pytest.mark.parametrize(("route", "body"), ANONYMOUS_FORMS)
async def test_lone_surrogates_in_anonymous_forms_are_a_clean_400(
    client: Any, user: Any, route: str, body: dict[str, str]
) -> None:
    await assert_surrogate_refused(client.post, route, body)


@pytest.mark.parametrize("carrier", ["cookie", "bearer"])
@pytest.mark.parametrize(("route", "body"), ACCOUNT_FORMS)
async def test_lone_surrogates_in_account_forms_are_a_clean_400(
    app: Quart, signed_in: SignedIn, carrier: str, route: str, body: dict[str, str]
) -> None:
    client = app.test_client()
    if carrier == "cookie":
        client.set_cookie("localhost", ACCESS_COOKIE, signed_in.tokens.access_token)
        post = client.post
    else:

        async def post(path: str, headers: dict[str, str], **kwargs: Any) -> Any:
            auth = bearer(signed_in.tokens.access_token)
            return await client.post(path, headers={**headers, **auth}, **kwargs)

    await assert_surrogate_refused(post, route, body)
    me = await client.get("/me", headers=bearer(signed_in.tokens.access_token))
    assert me.status_code == 200 and (await me.get_json())["name"] == "Ann", "nothing changed"


# Host headers that are no host ---------------------------------------------------------------

BAD_HOSTS: list[bytes] = [
    b"a" * 64 + b".example",
    b"www." + b"b" * 64,
    b"a..b",
    b".",
    b".example.com",
    b"x" * 300,
    b"a." * 150,
    "ex\u00e4mple.com".encode(),
    b"\xff\xfe",
    b"localhost:abc",
    b"localhost:99999",
    b"localhost:0",
    b"localhost:",
    b"[::1",
    b"[zz::1]",
    b"host name",
    b"evil.example/path",
    b"user@evil.example",
    b"",
]
GOOD_HOSTS: list[bytes] = [
    b"localhost",
    b"127.0.0.1:8000",
    b"[::1]:8000",
    b"example.com.",
    b"web_1:8000",
    b"xn--exmple-cua.com",
    b"a" * 63 + b".example",
]


async def asgi_request(
    app: Quart, hosts: list[bytes], method: str = "GET", path: str = "/", body: bytes = b""
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request straight through the ASGI interface: the raw Host bytes, as a socket sends."""
    sent: list[dict[str, Any]] = []
    headers = [(b"host", host) for host in hosts] + [(b"accept", b"text/html")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    messages = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "headers": headers,
        "extensions": {},
    }
    await app(scope, receive, send)
    start = sent[0]
    content = b"".join(message.get("body", b"") for message in sent[1:])
    return start["status"], dict(start["headers"]), content


ROUTES = [
    pytest.param("GET", "/", b"", id="page"),
    pytest.param("GET", "/dashboard", b"", id="protected"),
    pytest.param("POST", "/login", json.dumps(ANN).encode(), id="login"),
    pytest.param("GET", "/static/style.css", b"", id="static"),
    pytest.param("GET", "/no/such/page", b"", id="404"),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_bad_hosts_are_a_clean_400_on_every_route(
    app: Quart, user: Any, method: str, path: str, body: bytes
) -> None:
    for host in BAD_HOSTS:
        status, headers, content = await asgi_request(app, [host], method, path, body)
        assert status == 400, host
        assert json.loads(content) == {"message": "Bad request"}
        assert headers[b"content-type"] == b"application/json"
        assert headers[b"x-content-type-options"] == b"nosniff"
    status, _, _ = await asgi_request(app, [b"localhost", b"evil.example"], method, path, body)
    assert status == 400, "two Host headers (RFC 9112 §3.2)"
    assert await live_sessions(app) == 0, "no refused login got as far as a session"


async def test_good_hosts_are_served(app: Quart) -> None:
    for host in GOOD_HOSTS:
        status, _, content = await asgi_request(app, [host], "GET", "/")
        assert status == 200, host
        assert b"Log in" in content
    status, _, _ = await asgi_request(app, [], "GET", "/healthz")  # HTTP/1.0: no Host at all
    assert status == 200


async def test_bad_hosts_leave_no_traceback_in_the_log(
    app: Quart, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for number in range(100):
        status, _, _ = await asgi_request(app, [BAD_HOSTS[number % len(BAD_HOSTS)]], "GET", "/")
        assert status == 400
    assert "Traceback" not in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert not [record for record in caplog.records if record.exc_info]


async def test_a_websocket_with_a_bad_host_is_closed(app: Quart) -> None:
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "websocket.connect"}])

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "websocket.disconnect", "code": 1000})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "headers": [(b"host", b"a" * 64 + b".example")],
        "subprotocols": [],
        "extensions": {},
    }
    await app(scope, receive, send)
    assert [message["type"] for message in sent] == ["websocket.close"]


async def test_an_origin_that_is_no_url_is_refused_not_a_500(client: Any) -> None:
    response = await client.post("/login", json=ANN, headers={"Origin": "http://[x"})
    assert response.status_code == 403
    assert await response.get_json() == {"message": "Cross-origin request refused"}
