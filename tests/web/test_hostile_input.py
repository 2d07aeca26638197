"""Client input that used to give a 500 (issue 16 §3): `next` targets, lone surrogates, Host.

Each is answered with a redirect to a safe place or a clean 400, and the redirect is built before
the write it follows: a login whose answer cannot be built starts no session, a refresh uses up
no token.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import func, select

from quart_auth_app.models import LoginSession
from quart_auth_app.testing import DEFAULT_PASSWORD, db_session

ANN = {"email": "ann@example.com", "password": DEFAULT_PASSWORD}


async def live_sessions(app: Quart) -> int:
    async with db_session(app) as db:
        query = select(func.count()).where(LoginSession.revoked_at.is_(None))
        return int((await db.execute(query.select_from(LoginSession))).scalar_one())


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
