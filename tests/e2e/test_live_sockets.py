"""Websockets on real servers (SPEC §12): a real client, several processes, and a real browser."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.servers import Server, running_serve, running_server

from .conftest import Person, log_in, server_env, sign_up

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
PASSWORD = "a perfectly fine passphrase"
ENDS_WITHIN = 2.0  # SPEC §12


def account(server: Server) -> tuple[str, str]:
    """A new user's name and a bearer token of one login on `server`."""
    email = f"ws-{uuid.uuid4().hex[:8]}@example.com"
    created = httpx.post(
        server.url + "/signup", json={"name": "Wes", "email": email, "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    login = httpx.post(server.url + "/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return "Wes", login.json()["access_token"]


def open_socket(server: Server, token: str) -> ClientConnection:
    url = server.url.replace("http://", "ws://") + "/ws/dashboard"
    return connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10)


def closed_after(socket: ClientConnection, within: float) -> tuple[int, float]:
    """The close code the server sent and how long after the call it arrived."""
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=within)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, time.monotonic() - started


@pytest.mark.parametrize("server_name", ["granian", "hypercorn"])
def test_serve_serves_authenticated_websockets(tmp_path: Path, server_name: str) -> None:
    with running_serve(server_env(tmp_path), workers=2, server=server_name) as server:
        name, token = account(server)
        with open_socket(server, token) as socket:
            assert json.loads(socket.recv(timeout=5)) == {
                "message": f"Welcome {name}! You are logged in."
            }
            socket.send(json.dumps({"ping": 1}))
            assert json.loads(socket.recv(timeout=5))["echo"] == {"ping": 1}
            out = httpx.post(server.url + "/logout", headers={"Authorization": f"Bearer {token}"})
            assert out.status_code == 200
            code, _ = closed_after(socket, ENDS_WITHIN + 0.5)
            assert code == 4401
        with pytest.raises(InvalidStatus) as refusal:
            open_socket(server, token)
        assert refusal.value.response.status_code == 401
        url = server.url.replace("http://", "ws://") + "/ws/nowhere"
        with pytest.raises(InvalidStatus) as missing:
            connect(url, open_timeout=10)
        assert missing.value.response.status_code == 404
        assert "Traceback" not in server.log()


REDIS = [
    "database",
    pytest.param(
        "redis", marks=pytest.mark.skipif(not TEST_REDIS_URL, reason="set TEST_REDIS_URL")
    ),
]


@pytest.mark.parametrize("via", REDIS)
def test_logout_on_one_process_closes_the_socket_on_another(tmp_path: Path, via: str) -> None:
    env = server_env(tmp_path)  # one SQLite file, one secret: two instances of one deployment
    if via == "redis":
        assert TEST_REDIS_URL is not None
        env.update(REDIS_URL=TEST_REDIS_URL, REDIS_KEY_PREFIX=f"qaa-ws-{uuid.uuid4().hex}")
    with running_server(env) as holder, running_server(env) as other:
        _, token = account(other)
        with open_socket(holder, token) as socket:
            socket.recv(timeout=5)
            out = httpx.post(other.url + "/logout", headers={"Authorization": f"Bearer {token}"})
            assert out.status_code == 200
            code, waited = closed_after(socket, ENDS_WITHIN + 0.5)
        assert code == 4401
        assert waited <= ENDS_WITHIN


def test_cross_origin_handshake_is_refused_by_the_server(server: Server) -> None:
    _, token = account(server)
    url = server.url.replace("http://", "ws://") + "/ws/dashboard"
    with pytest.raises(InvalidStatus) as refusal:
        connect(
            url,
            origin="https://evil.example",  # type: ignore[arg-type]
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10,
        )
    assert refusal.value.response.status_code == 403


def test_dashboard_says_so_when_signed_out_in_another_tab(
    context: Any, page: Any, person: Person
) -> None:
    sign_up(page, person)
    log_in(page, person)
    assert page.url.endswith("/dashboard")
    notice = page.locator("#signed-out")
    assert notice.is_hidden()
    page.wait_for_timeout(300)  # the socket is open
    other = context.new_page()
    other.goto("/dashboard")
    other.locator("header").get_by_role("button", name="Log out").click()
    notice.wait_for(state="visible", timeout=ENDS_WITHIN * 1000 + 500)
    assert "signed out" in notice.inner_text()
    link = notice.get_by_role("link", name="Sign in again")
    link.click()
    page.wait_for_url("**/login")
