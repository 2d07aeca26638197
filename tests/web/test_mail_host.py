"""Issue 16 §2: links in mails never point at a host the operator did not configure.

Mails go to a real SMTP server (aiosmtpd, the fixtures of tests/mail_server.py); the requests
that cause them name another host in `Host`, in `X-Forwarded-Host` or in `Forwarded`.
"""

from __future__ import annotations

import logging
import socket
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from quart import Quart

from quart_auth_app.testing import make_user
from quart_auth_app.web.hosts import valid_host

from ..conftest import BROWSER, bearer, running_app
from ..mail_server import Inbox
from ..servers import FAST_HASHING, running_server
from .test_mail_flows import (
    LINK,
    NEW_PASSWORD,
    SIGNUP,
    link_in,
    mails_to,
    only_link,
    path_of,
    settle,
    token_of,
)

EVIL = "evil.example"
EMAIL = SIGNUP["email"]
UNKNOWN_HOST = {"message": "Unknown host"}
PUBLIC_URL = "https://auth.example.org"
# Every header a proxy (or an attacker) uses to name another host or scheme.
PROXY_HEADERS = {
    "X-Forwarded-Host": EVIL,
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "8443",
    "X-Forwarded-Server": EVIL,
    "X-Original-Host": EVIL,
    "Forwarded": f"for=198.51.100.7;host={EVIL};proto=https",
}
FOREIGN_HEADERS = {
    "Host": {"Host": EVIL},
    "X-Forwarded-Host": {"X-Forwarded-Host": EVIL},
    "Host and proxy headers": {"Host": f"{EVIL}:8443", **PROXY_HEADERS},
}
FOREIGN_HOSTS = {name: headers for name, headers in FOREIGN_HEADERS.items() if "Host" in headers}
FLOWS = ("reset", "verify")
PATHS = {"reset": "/password/reset?token=", "verify": "/verify?token="}


@pytest.fixture
def mail_config(app_config: dict[str, Any], smtp_server: Controller) -> dict[str, Any]:
    """Real SMTP, and neither PUBLIC_URL nor ALLOWED_HOSTS yet."""
    return {**app_config, "MAIL_URL": f"smtp://127.0.0.1:{smtp_server.port}"}


async def request_mail(app: Quart, flow: str, headers: dict[str, str]) -> Any:
    """Cause a mail to ann@example.com: a signup (verify) or a forgotten password (reset)."""
    client = app.test_client()
    if flow == "verify":
        return await client.post("/signup", json=SIGNUP, headers=headers)
    await make_user(app, name="Ann", email=EMAIL)
    return await client.post("/password/forgot", json={"email": EMAIL}, headers=headers)


async def assert_link_works(app: Quart, flow: str, link: str, host: str = "localhost") -> None:
    """Open the mailed link on the real host: the address is verified, or the password reset."""
    client = app.test_client()
    on_host = {"Host": host}
    if flow == "verify":
        opened = await client.get(path_of(link), headers=on_host)
        assert opened.status_code == 200
    else:
        body = {"token": token_of(link), "new_password": NEW_PASSWORD}
        done = await client.post("/password/reset", json=body, headers=on_host)
        assert done.status_code == 204
        login = await client.post(
            "/login", json={"email": EMAIL, "password": NEW_PASSWORD}, headers=on_host
        )
        assert login.status_code == 200


def mail_text(message: EmailMessage) -> str:
    parts = (message.get_body(preferencelist=(kind,)) for kind in ("plain", "html"))
    return "\n".join(part.get_content() for part in parts if part is not None)


# --- PUBLIC_URL set: it is the base of every link --------------------------------------------


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("headers", FOREIGN_HEADERS.values(), ids=FOREIGN_HEADERS.keys())
async def test_with_public_url_links_ignore_the_request_host(
    mail_config: dict[str, Any], inbox: Inbox, flow: str, headers: dict[str, str]
) -> None:
    config = {**mail_config, "PUBLIC_URL": PUBLIC_URL, "TRUSTED_PROXIES": "1"}
    async with running_app(config) as app:
        response = await request_mail(app, flow, headers)
        assert response.status_code in (201, 202)
        messages = await mails_to(app, inbox, EMAIL)
        assert len(messages) == 1
        assert link_in(messages[0]).startswith(f"{PUBLIC_URL}{PATHS[flow]}")
        assert EVIL not in mail_text(messages[0]) and EVIL.encode() not in inbox.raw[0]
        await assert_link_works(app, flow, link_in(messages[0]))


# --- ALLOWED_HOSTS set: other hosts are refused before anything happens ---------------------


@pytest.fixture
def allowed_config(mail_config: dict[str, Any]) -> dict[str, Any]:
    return {**mail_config, "ALLOWED_HOSTS": "localhost, auth.example.org:8443"}


@pytest.mark.parametrize("headers", FOREIGN_HOSTS.values(), ids=FOREIGN_HOSTS.keys())
async def test_a_foreign_host_gets_400_and_no_mail(
    allowed_config: dict[str, Any], inbox: Inbox, headers: dict[str, str]
) -> None:
    async with running_app(allowed_config) as app:
        client = app.test_client()
        await make_user(app, name="Una", email="una@example.com")
        signup = await client.post("/signup", json=SIGNUP, headers=headers)
        forgot = await client.post(
            "/password/forgot", json={"email": "una@example.com"}, headers=headers
        )
        resend = await client.post(
            "/verify/request", json={"email": "una@example.com"}, headers=headers
        )
        for response in (signup, forgot, resend):
            assert response.status_code == 400
            assert await response.get_json() == UNKNOWN_HOST
        page = await client.post(
            "/password/forgot", form={"email": "una@example.com"}, headers={**headers, **BROWSER}
        )
        assert page.status_code == 400
        assert "Unknown host" in await page.get_data(as_text=True)
        await settle(app)
        assert inbox.messages == []
        # The refused signup created nothing: the address is still free on the real host.
        again = await client.post("/signup", json=SIGNUP)
        assert again.status_code == 201


@pytest.mark.parametrize("flow", FLOWS)
async def test_proxy_headers_never_change_the_link(
    allowed_config: dict[str, Any], inbox: Inbox, flow: str
) -> None:
    async with running_app(allowed_config) as app:
        headers = {"Host": "auth.example.org:8443", **PROXY_HEADERS}
        response = await request_mail(app, flow, headers)
        assert response.status_code in (201, 202)
        link = await only_link(app, inbox, EMAIL)
        # The allowed Host the request came with, its scheme as the server saw it (no proxy).
        assert link.startswith(f"http://auth.example.org:8443{PATHS[flow]}")
        assert EVIL.encode() not in inbox.raw[0]
        await assert_link_works(app, flow, link, host="auth.example.org:8443")


async def test_refused_hosts_spend_no_attempts(
    allowed_config: dict[str, Any], inbox: Inbox
) -> None:
    async with running_app({**allowed_config, "AUTH_ATTEMPTS_PER_MINUTE": "2"}) as app:
        client = app.test_client()
        await make_user(app, name="Ann", email=EMAIL)
        for _ in range(5):
            refused = await client.post(
                "/password/forgot", json={"email": EMAIL}, headers={"Host": EVIL}
            )
            assert refused.status_code == 400
        for _ in range(2):
            ok = await client.post("/password/forgot", json={"email": EMAIL})
            assert ok.status_code == 202
        assert (await client.post("/password/forgot", json={"email": EMAIL})).status_code == 429
        assert len(await mails_to(app, inbox, EMAIL)) == 2


ALLOWED = "localhost, auth.example.org:8443, .example.net, 10.0.0.5, [::1]:8000"
ADMITTED = [
    "localhost",
    "LocalHost",
    "auth.example.org:8443",
    "example.net",
    "a.b.example.net",
    "10.0.0.5",
    "[::1]:8000",
]
REFUSED = [
    EVIL,
    "localhost:5000",  # a port is part of the host
    "auth.example.org",
    "auth.example.org:8444",
    "www.auth.example.org:8443",  # no leading dot: no subdomains
    "example.net.evil.example",
    "evilexample.net",
    "10.0.0.5:8000",
    "[::1]",
    "localhost.",
    "",
    "local host",
    "evil.example@localhost",
    "localhost:0",
    "localhost:99999",
    "localhost:8000:1",
    "x" * 300,
    "localhost\x00",
]


async def test_allowed_hosts_match_names_ports_and_subdomains(app_config: dict[str, Any]) -> None:
    async with running_app({**app_config, "ALLOWED_HOSTS": ALLOWED}) as app:
        client = app.test_client()
        for host in ADMITTED:
            response = await client.get("/me", headers={"Host": host})
            assert response.status_code == 401, host  # past the gate: no token
        for host in REFUSED:
            response = await client.get("/me", headers={"Host": host})
            assert response.status_code == 400, host
            # A Host that is no host name at all is refused before the app (web/hosts.py).
            expected = UNKNOWN_HOST if valid_host(host) else {"message": "Bad request"}
            assert await response.get_json() == expected, host


async def test_the_refusal_is_a_page_for_browsers_with_the_usual_headers(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with running_app({**app_config, "ALLOWED_HOSTS": "localhost"}) as app:
        client = app.test_client()
        with caplog.at_level(logging.INFO, logger="quart_auth_app"):
            page = await client.get("/login", headers={"Host": EVIL, **BROWSER})
        assert page.status_code == 400
        assert page.mimetype == "text/html"
        assert "Unknown host" in await page.get_data(as_text=True)
        assert "Content-Security-Policy" in page.headers
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert any(EVIL in record.getMessage() for record in caplog.records)
        # A signed-in caller on a foreign host is refused as well (bearer and cookie).
        await client.post("/signup", json=SIGNUP)
        tokens = await (
            await client.post("/login", json={"email": EMAIL, "password": SIGNUP["password"]})
        ).get_json()
        by_bearer = await client.get(
            "/dashboard", headers={"Host": EVIL, **bearer(tokens["access_token"])}
        )
        assert by_bearer.status_code == 400 and await by_bearer.get_json() == UNKNOWN_HOST
        browser = app.test_client()
        browser.set_cookie("localhost", "jwt_token", tokens["access_token"])
        by_cookie = await browser.get("/dashboard", headers={"Host": EVIL, **BROWSER})
        assert by_cookie.status_code == 400


async def test_healthz_answers_probes_by_address(app_config: dict[str, Any]) -> None:
    async with running_app({**app_config, "ALLOWED_HOSTS": "auth.example.org"}) as app:
        client = app.test_client()
        for host in ("10.1.2.3:8000", "[fd00::7]:8000", EVIL):
            health = await client.get("/healthz", headers={"Host": host})
            assert health.status_code == 200 and await health.get_json() == {"status": "ok"}
        assert (
            await client.get("/openapi.json", headers={"Host": "10.1.2.3:8000"})
        ).status_code == 400


LONG_NAME = "a" * 63 + ".example.org"  # valid, past the request's fast check of its length


@pytest.mark.parametrize("allowed", ["", f"localhost, {LONG_NAME}"], ids=["any", "allow-list"])
async def test_names_idna_cannot_encode_are_never_a_500(
    app_config: dict[str, Any], allowed: str
) -> None:
    # Routing IDNA-encodes the host before any error handler runs (a label over 63 characters,
    # an empty label): web/hosts.py refuses such a Host before the app sees it.
    async with running_app({**app_config, "ALLOWED_HOSTS": allowed}) as app:
        client = app.test_client()
        for host in ("x" * 64, "a..example", ".example", ".", "x" * 64 + ".example:8000"):
            response = await client.get("/me", headers={"Host": host})
            assert response.status_code == 400, host
        assert (await client.get("/me", headers={"Host": LONG_NAME})).status_code == 401


# --- mail in the log (development) ------------------------------------------------------------


async def test_log_mode_links_use_the_host_header_never_a_proxy_header(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # No MAIL_URL: the mail (and its link) goes to the developer's own log.
    async with running_app({**app_config, "TRUSTED_PROXIES": "2"}) as app:
        headers = {**PROXY_HEADERS, "X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
        with caplog.at_level(logging.INFO, logger="quart_auth_app"):
            response = await app.test_client().post("/signup", json=SIGNUP, headers=headers)
            assert response.status_code == 201
            await settle(app)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    links = LINK.findall(logged)
    assert len(links) == 1 and links[0].startswith("http://localhost/verify?token=")
    assert EVIL not in logged


# --- a real server ----------------------------------------------------------------------------


def wait_for_mail(inbox: Inbox, count: int, timeout: float = 15) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while len(inbox.messages) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(inbox.messages)


def raw_request(url: str, head: bytes) -> bytes:
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_hypercorn_refuses_foreign_hosts_and_links_use_the_allowed_one(
    tmp_path: Path, smtp_server: Controller, inbox: Inbox
) -> None:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        "INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "mail-host-tests-secret-key-0123456789abcdef",
        "MAIL_URL": f"smtp://127.0.0.1:{smtp_server.port}",
        "ALLOWED_HOSTS": "auth.example.org:8443",
        **FAST_HASHING,
    }
    real = {"Host": "auth.example.org:8443"}
    with running_server(env) as server, httpx.Client(base_url=server.url, timeout=20) as http:
        # The harness waited for /healthz by address: probes pass whatever the Host.
        assert http.get("/healthz").status_code == 200
        refused = http.post("/signup", json=SIGNUP, headers={"Host": EVIL})
        assert refused.status_code == 400 and refused.json() == UNKNOWN_HOST
        created = http.post("/signup", json=SIGNUP, headers={**real, **PROXY_HEADERS})
        assert created.status_code == 201
        forgot = http.post("/password/forgot", json={"email": EMAIL}, headers={"Host": EVIL})
        assert forgot.status_code == 400
        body = (
            b"Content-Type: application/json\r\nContent-Length: 28\r\n\r\n"
            b'{"email": "ann@example.com"}'
        )
        # HTTP/1.0 without Host: werkzeug falls back to the socket's address, not allowed here.
        bare = raw_request(server.url, b"POST /password/forgot HTTP/1.0\r\n" + body)
        assert bare.startswith(b"HTTP/1.1 400 ") and bare.endswith(b'{"message":"Unknown host"}\n')
        # Two Host headers: the server refuses the request itself.
        twice = b"Host: auth.example.org:8443\r\nHost: evil.example\r\nConnection: close\r\n"
        doubled = raw_request(server.url, b"POST /password/forgot HTTP/1.1\r\n" + twice + body)
        assert doubled.startswith(b"HTTP/1.1 400 ")
        # An absolute request target naming another host: the link still follows Host.
        absolute = raw_request(
            server.url,
            b"POST http://evil.example/password/forgot HTTP/1.1\r\n"
            b"Host: auth.example.org:8443\r\nConnection: close\r\n" + body,
        )
        assert absolute.startswith(b"HTTP/1.1 202 ")
        messages = wait_for_mail(inbox, 2)
        assert [message["Subject"] for message in messages] == [
            "Verify your email address",
            "Reset your password",
        ]
        for message, flow in zip(messages, FLOWS[::-1], strict=True):
            assert link_in(message).startswith(f"http://auth.example.org:8443{PATHS[flow]}")
        assert all(EVIL.encode() not in raw for raw in inbox.raw)
        done = http.post(
            "/password/reset",
            json={"token": token_of(link_in(messages[1])), "new_password": NEW_PASSWORD},
            headers=real,
        )
        assert done.status_code == 204
        assert len(inbox.messages) == 2  # none for any refused request, however late
        assert "Traceback" not in server.log()
