"""The shipped hypercorn.toml with several workers: start-up work happens once, every worker agrees.

These start real server processes on the embedded default (SQLite, no SECRET_KEY), so they run
everywhere, with no service configured.
"""

from __future__ import annotations

import stat
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jwt
import pytest

from quart_auth_app.testing import DEFAULT_PASSWORD

from ..conftest import bearer
from ..servers import FAST_HASHING, HYPERCORN_TOML, Server, configured_workers, running_server

GENERATED_WARNING = "SECRET_KEY is not set: generated one"


def embedded_env(instance: Path) -> dict[str, str]:
    """The embedded default: nothing but an instance folder (and cheap hashing for speed)."""
    return {**FAST_HASHING, "INSTANCE_PATH": str(instance)}


def sign_up_and_in(server: Server) -> str:
    """A new user through the server; returns an access token from its login."""
    credentials = {"email": f"w-{uuid.uuid4().hex[:8]}@example.com", "password": DEFAULT_PASSWORD}
    created = httpx.post(server.url + "/signup", json={"name": "Wor", **credentials})
    assert created.status_code == 201, created.text
    login = httpx.post(server.url + "/login", json=credentials)
    assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    return token


def dashboard_on_fresh_connection(server: Server, token: str) -> int:
    with httpx.Client() as client:  # a new connection, so whichever worker accepts it answers
        return client.get(server.url + "/dashboard", headers=bearer(token)).status_code


def test_shipped_config_runs_several_asyncio_workers() -> None:
    # asyncio rather than uvloop: uvloop's tail latency at 256 connections (docs/performance.md).
    assert configured_workers(HYPERCORN_TOML) >= 2
    assert 'worker_class = "asyncio"' in HYPERCORN_TOML.read_text()


@pytest.mark.parametrize("attempt", range(3))
def test_workers_starting_together_generate_one_secret(tmp_path: Path, attempt: int) -> None:
    instance = tmp_path / "instance"  # does not exist yet: every worker races to create it
    with running_server(embedded_env(instance), workers=None) as server:
        key_file = instance / "secret_key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        token = sign_up_and_in(server)
        # Signed with the key on disk, whichever worker issued it...
        jwt.decode(token, key_file.read_text(), algorithms=["HS256"], issuer="quart_auth_app")
        # ...and accepted by every worker, over many connections spread between them.
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(lambda _: dashboard_on_fresh_connection(server, token), range(60))
            )
        assert set(statuses) == {200}
        assert len(server.worker_pids()) == configured_workers(HYPERCORN_TOML)
        log = server.log()
        assert log.count(GENERATED_WARNING) == 1  # one worker generated it, the others read it
        assert "Traceback" not in log
        assert server.alive()
    assert server.process.returncode == 0


def test_workers_write_to_sqlite_at_the_same_time(tmp_path: Path) -> None:
    with running_server(embedded_env(tmp_path / "instance"), workers=None) as server:
        with ThreadPoolExecutor(6) as pool:
            tokens = list(pool.map(lambda _: sign_up_and_in(server), range(12)))
        assert len(set(tokens)) == 12
        assert len(server.worker_pids()) >= 2
        assert "Traceback" not in server.log()


def test_restart_keeps_the_generated_secret_and_the_tokens(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    with running_server(embedded_env(instance), workers=None) as first:
        token = sign_up_and_in(first)
    key = (instance / "secret_key").read_text()
    with running_server(embedded_env(instance), workers=None) as second:
        statuses = {dashboard_on_fresh_connection(second, token) for _ in range(10)}
        assert statuses == {200}
        assert GENERATED_WARNING not in second.log()
    assert (instance / "secret_key").read_text() == key


def test_logout_on_one_worker_holds_on_every_worker_without_redis(tmp_path: Path) -> None:
    with running_server(embedded_env(tmp_path / "instance"), workers=None) as server:
        token = sign_up_and_in(server)
        out = httpx.post(server.url + "/logout", headers=bearer(token))
        assert out.status_code == 200
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(lambda _: dashboard_on_fresh_connection(server, token), range(40))
            )
        # The revocation lives in the database every worker reads: no worker accepts the token.
        assert set(statuses) == {401}
        assert len(server.worker_pids()) == 2
