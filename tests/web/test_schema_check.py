"""SPEC §9: a database schema behind this code, and the operator mistakes met at start.

A PostgreSQL schema that is missing or behind stops start-up with one line naming
`quart-auth-app db upgrade`; a database that does not answer at start does not (the server
serves 503s and recovers by itself); requests that meet a missing table answer 503, not 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart
from quart.testing.app import LifespanError
from sqlalchemy.engine import make_url

from quart_auth_app import create_app, migrate
from quart_auth_app.migrate import HEAD_REVISION, upgrade_database

from ..conftest import (
    BROWSER,
    TEST_DATABASE_URL,
    bearer,
    reset_postgres,
    without_root_privilege,
)
from ..servers import FAST_HASHING, PROJECT_DIR, child_environment, free_port, running_server
from .test_healthz import run_sql

SECRET = "schema-check-secret-key-0123456789abcdef"
BEHIND = (
    f"quart-auth-app: database schema is not up to date (found none, need {HEAD_REVISION}):"
    " run `quart-auth-app db upgrade`"
)
needs_postgres = pytest.mark.skipif(not TEST_DATABASE_URL, reason="set TEST_DATABASE_URL")


# --- At request time: a table the code needs is gone (a rollback, a restore from old dumps). ---


async def test_requests_answer_503_with_the_hint_logged_when_a_table_is_gone(
    app: Quart, client: Any, signed_in: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    drop = (
        "DROP TABLE users CASCADE" if database_url.startswith("postgresql") else "DROP TABLE users"
    )
    await run_sql(database_url, drop)
    access = signed_in.tokens.access_token
    signup = {"name": "Kim", "email": "kim@example.com", "password": "a long passphrase"}
    with caplog.at_level(logging.ERROR):
        answers = [
            await client.post("/signup", json=signup),
            await client.get("/dashboard", headers=bearer(access)),
        ]
        client.set_cookie("localhost", "jwt_token", access)
        answers.append(await client.get("/dashboard"))  # the cookie, as an API client
        answers.append(await client.get("/dashboard", headers=BROWSER))  # and as a browser
    for response in answers:
        assert response.status_code == 503, await response.get_data(as_text=True)
        assert response.headers["Retry-After"] == "5"
    for response in answers[:3]:
        assert await response.get_json() == {"message": "Service temporarily unavailable"}
    hints = [r for r in caplog.records if "run `quart-auth-app db upgrade`" in r.getMessage()]
    assert len(hints) == len(answers)


# --- At start, in process: create_app() users see the refusal as a start-up failure. ---


@needs_postgres
async def test_start_on_an_empty_postgres_is_refused(empty_postgres: str, tmp_path: Path) -> None:
    app = create_app({"DATABASE_URL": empty_postgres, "INSTANCE_PATH": str(tmp_path)})
    with pytest.raises(LifespanError, match=r"found none, need .*quart-auth-app db upgrade"):
        async with app.test_app():
            pass


@needs_postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_start_is_refused_when_the_code_expects_a_newer_schema(
    app_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    await reset_postgres(app_config["DATABASE_URL"])  # at this code's revision, 0001
    monkeypatch.setattr(migrate, "REVISIONS", (*migrate.REVISIONS, "9001"))
    monkeypatch.setattr(migrate, "HEAD_REVISION", "9001")
    app = create_app(app_config)
    expected = f"found {HEAD_REVISION}, need 9001"
    with pytest.raises(LifespanError, match=expected):
        async with app.test_app():
            pass


@needs_postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_start_on_a_newer_schema_serves_and_says_so(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    await reset_postgres(app_config["DATABASE_URL"])
    await run_sql(app_config["DATABASE_URL"], "UPDATE alembic_version SET version_num = '9001'")
    app = create_app(app_config)
    with caplog.at_level(logging.WARNING):
        async with app.test_app():
            assert (await app.test_client().get("/healthz")).status_code == 200
    assert any("newer than this code" in r.getMessage() for r in caplog.records)


# --- At start, in a real server: one line, no traceback. ---


def refused_start(env: dict[str, str], prefix: list[str] | None = None) -> str:
    """Start hypercorn (one worker) on `env`, expect it to end by itself; returns its output."""
    result = subprocess.run(
        [
            *(prefix or []),
            sys.executable,
            "-m",
            "hypercorn",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "quart_auth_app:app",
        ],
        cwd=PROJECT_DIR,
        env=child_environment({**FAST_HASHING, "SECRET_KEY": SECRET, **env}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    # Hypercorn's master exits 0 whatever its worker's status (its run() joins the workers a
    # second time and keeps the last, empty result): the line is what an operator sees.
    return result.stdout


@needs_postgres
def test_server_refuses_an_empty_postgres_with_one_line(
    empty_postgres: str, tmp_path: Path
) -> None:
    output = refused_start({"DATABASE_URL": empty_postgres, "INSTANCE_PATH": str(tmp_path)})
    assert output.splitlines() == [BEHIND]


@needs_postgres
def test_server_refuses_tables_without_a_revision_with_one_line(
    empty_postgres: str, tmp_path: Path
) -> None:
    asyncio.run(upgrade_database(empty_postgres, tmp_path))
    asyncio.run(run_sql(empty_postgres, "DROP TABLE alembic_version"))
    output = refused_start({"DATABASE_URL": empty_postgres, "INSTANCE_PATH": str(tmp_path)})
    assert output.splitlines() == [BEHIND]


def test_server_refuses_a_read_only_instance_folder_with_one_line(tmp_path: Path) -> None:
    instance = tmp_path / "read-only"
    instance.mkdir(mode=0o555)
    output = refused_start({"INSTANCE_PATH": str(instance)}, without_root_privilege())
    assert output.splitlines() == [
        f"quart-auth-app: INSTANCE_PATH: cannot create the migration lock"
        f" {instance / 'app.db.migrate-lock'}: Permission denied (the folder must be writable)"
    ]


class Forwarder:
    """Relays connections from a loopback port to another address, once started."""

    def __init__(self, port: int, upstream: tuple[str, int]) -> None:
        self.port = port
        self.upstream = upstream
        self.sockets: list[socket.socket] = []

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.sockets.append(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pipe, args=(source, target), daemon=True).start()

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@pytest.fixture
def forwarder() -> Iterator[Forwarder]:
    assert TEST_DATABASE_URL is not None
    url = make_url(TEST_DATABASE_URL)
    relay = Forwarder(free_port(), (url.host or "127.0.0.1", url.port or 5432))
    yield relay
    relay.close()


@needs_postgres
def test_server_started_while_postgres_is_unreachable_recovers_by_itself(
    empty_postgres: str, forwarder: Forwarder, tmp_path: Path
) -> None:
    asyncio.run(upgrade_database(empty_postgres, tmp_path))
    through_relay = make_url(empty_postgres).set(host="127.0.0.1", port=forwarder.port)
    env = {
        **FAST_HASHING,
        "SECRET_KEY": SECRET,
        "INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": through_relay.render_as_string(hide_password=False),
    }
    with running_server(env, ready_status=503) as server:  # nothing listens at the relay yet
        assert httpx.get(server.url + "/healthz").json() == {
            "status": "unavailable",
            "checks": {"database": "unreachable"},
        }
        signup = {"name": "Lee", "email": "lee@example.com", "password": "a long passphrase"}
        assert httpx.post(server.url + "/signup", json=signup).status_code == 503
        forwarder.start()  # the database comes up
        assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
        assert httpx.post(server.url + "/signup", json=signup).status_code == 201
        log = server.log()
    assert "database unreachable at start (ConnectionRefusedError): serving" in log
    assert "Traceback" not in log
