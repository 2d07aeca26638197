"""`quart-auth-app serve`, the README's production command, as real processes (SPEC §9).

A configuration error is one line and exit 2 before any worker starts; a worker killed with
SIGKILL is replaced while the others keep serving; SIGTERM during logins lets every one of them
finish and the server exits 0; a request whose client leaves still does its database work; and
`--server hypercorn` serves the same app. The tests on a database run on SQLite and, when
TEST_DATABASE_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from quart_auth_app.cli import build_parser
from quart_auth_app.models import Base
from quart_auth_app.serve import (
    DEFAULT_GRACEFUL_TIMEOUT,
    HYPERCORN_ACCESS_FORMAT,
    HYPERCORN_SETTINGS,
)
from quart_auth_app.testing import DEFAULT_PASSWORD

from ..conftest import TEST_DATABASE_URL, bearer
from ..servers import (
    FAST_HASHING,
    HYPERCORN_TOML,
    SERVE_SCRIPT,
    Server,
    child_environment,
    free_port,
    running_serve,
)

SERVERS = ["granian", "hypercorn"]
DATABASES = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])
SECRET = "serve-tests-secret-key-0123456789abcdef"
# Logins slow enough to be in flight when SIGTERM comes: one hash thread per worker, and a
# time cost that makes each hash take a hundred milliseconds or more.
SLOW_HASHING = {"ARGON2_MEMORY_COST": "19456", "ARGON2_TIME_COST": "12", "HASH_WORKERS": "1"}
CONCURRENT_LOGINS = 24


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh database's environment: an SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"}
        return
    assert TEST_DATABASE_URL is not None
    asyncio.run(drop_schema(TEST_DATABASE_URL))
    env = {"DATABASE_URL": TEST_DATABASE_URL}
    # As the README deploys PostgreSQL: the schema first, by the console script.
    upgrade = subprocess.run(
        [str(SERVE_SCRIPT), "db", "upgrade"],
        env=child_environment({**env, "SECRET_KEY": SECRET, "INSTANCE_PATH": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    yield env


async def drop_schema(url: str) -> None:
    """The app's tables and Alembic's record of them, so that `db upgrade` starts afresh."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.drop_all)
            await connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        await engine.dispose()


def server_env(tmp_path: Path, database: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        "SECRET_KEY": SECRET,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "RATE_LIMIT_ENABLED": "false",
        **FAST_HASHING,
        **database,
        **extra,
    }


def sign_up(server: Server, email: str) -> None:
    created = httpx.post(
        server.url + "/signup",
        json={"name": "Serve", "email": email, "password": DEFAULT_PASSWORD},
        timeout=60,
    )
    assert created.status_code == 201, created.text


def log_in(server: Server, email: str) -> str:
    login = httpx.post(
        server.url + "/login", json={"email": email, "password": DEFAULT_PASSWORD}, timeout=60
    )
    assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    return token


def new_email() -> str:
    return f"s-{uuid.uuid4().hex[:10]}@example.com"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# The command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("10.0.0.5:8000", ("10.0.0.5", 8000)),
        ("[::]:8080", ("::", 8080)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_bind_takes_an_address_and_a_port(bind: str, expected: tuple[str, int]) -> None:
    args = build_parser().parse_args(["serve", "--bind", bind])
    assert args.bind == expected
    assert (args.server, args.graceful_timeout, args.access_log) == ("granian", 10, True)


@pytest.mark.parametrize(
    "argv",
    [
        ["--bind", "localhost:8000"],  # a name: granian binds addresses only
        ["--bind", "10.0.0.5"],
        ["--bind", "10.0.0.5:70000"],
        ["--workers", "0"],
        ["--graceful-timeout", "0"],
        ["--server", "nope"],
    ],
)
def test_bad_arguments_are_refused_with_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["serve", *argv])
    assert stopped.value.code == 2
    assert "error: argument" in capsys.readouterr().err


# A configuration error: one line, exit 2, no worker ----------------------------------------


def garbage_key(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    return path


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("case", ["short secret", "unreadable private key"])
def test_a_configuration_error_is_one_line_and_exit_2(
    tmp_path: Path, server: str, case: str
) -> None:
    if case == "short secret":
        env = {"SECRET_KEY": "short"}
        expected = "quart-auth-app: configuration error: SECRET_KEY: must be at least 32 bytes long"
    else:  # only building the app finds this one (load_settings reads the file's name)
        env = {
            "SECRET_KEY": SECRET,
            "JWT_ALGORITHM": "RS256",
            "JWT_PRIVATE_KEY_FILE": str(garbage_key(tmp_path)),
        }
        expected = "quart-auth-app: configuration error: JWT_PRIVATE_KEY_FILE: "
    bind = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = subprocess.run(
        [str(SERVE_SCRIPT), "serve", "--bind", bind, "--workers", "2", "--server", server],
        env=child_environment({"INSTANCE_PATH": str(tmp_path / "instance"), **env}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "worker" not in (result.stdout + result.stderr).lower()  # none was started
    assert time.monotonic() - started < 15


def test_a_worker_that_cannot_start_makes_serve_exit_non_zero(tmp_path: Path) -> None:
    # The settings are fine, but the database cannot be opened: each worker's start fails.
    env = server_env(tmp_path, {"DATABASE_URL": "sqlite+aiosqlite:////proc/no-such-dir/app.db"})
    started = time.monotonic()
    result = subprocess.run(
        [str(SERVE_SCRIPT), "serve", "--bind", f"127.0.0.1:{free_port()}", "--workers", "2"],
        env=child_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 45


# A worker killed with SIGKILL is replaced; the others keep serving ------------------------


class Traffic:
    """GET /dashboard on fresh connections from a few threads, each result with its time."""

    def __init__(self, server: Server, token: str, threads: int = 4) -> None:
        self.server, self.token, self.threads = server, token, threads
        self.results: list[tuple[float, int | str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads)
        self._futures = [self._pool.submit(self._loop) for _ in range(threads)]

    def _loop(self) -> None:
        deadline = time.monotonic() + 60  # bounded even if the test forgets to stop it
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                with httpx.Client(timeout=10) as client:
                    outcome: int | str = client.get(
                        self.server.url + "/dashboard", headers=bearer(self.token)
                    ).status_code
            except httpx.TransportError as error:
                outcome = type(error).__name__
            with self._lock:
                self.results.append((time.monotonic(), outcome))
            time.sleep(0.01)

    def stop(self) -> list[tuple[float, int | str]]:
        self._stop.set()
        for future in self._futures:
            future.result()
        self._pool.shutdown()
        return self.results


def kill_and_wait_for_replacement(server: Server, number: int) -> float:
    """SIGKILL granian's worker `number`; returns when its replacement serves."""
    before = server.granian_workers()
    serving = server.workers_running()
    killed_at = time.monotonic()
    os.kill(before[number], signal.SIGKILL)
    wait_for(
        lambda: (
            server.granian_workers()[number] != before[number]
            and server.workers_running() > serving
        ),
        30,
        f"worker-{number} to be replaced",
    )
    return killed_at


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_killed_worker_is_replaced_while_the_others_keep_serving(
    tmp_path: Path, database: dict[str, str]
) -> None:
    with running_serve(server_env(tmp_path, database), workers=2) as server:
        email = new_email()
        sign_up(server, email)
        token = log_in(server, email)
        original = server.granian_workers()
        assert len(original) == 2
        traffic = Traffic(server, token)
        time.sleep(1)
        first_kill = kill_and_wait_for_replacement(server, 1)
        time.sleep(0.5)
        # Now the other original worker: only worker-1's replacement is left to answer.
        second_kill = kill_and_wait_for_replacement(server, 2)
        time.sleep(1)
        results = traffic.stop()
        after = server.granian_workers()
        assert server.alive()
        log = server.log()

    assert set(after.values()).isdisjoint(original.values())  # both replaced, by new processes
    assert len(set(after.values())) == 2
    failures = [outcome for _, outcome in results if outcome != 200]
    # At most the requests the killed workers had in flight or queued: one per client thread.
    assert len(failures) <= 2 * traffic.threads, failures
    assert set(failures) <= {"RemoteProtocolError", "ReadError", "ConnectError"}, failures
    # Served throughout: while each replacement started, and after.
    for kill in (first_kill, second_kill):
        assert sum(1 for at, outcome in results if at > kill + 0.5 and outcome == 200) >= 5
    assert results[-1][1] == 200
    assert "Worker crash loop" not in log


# SIGTERM: every in-flight request finishes, exit 0 --------------------------------------------


def test_sigterm_during_concurrent_logins_answers_every_one(
    tmp_path: Path, database: dict[str, str]
) -> None:
    env = server_env(tmp_path, database, **SLOW_HASHING)
    emails = [new_email() for _ in range(CONCURRENT_LOGINS)]
    with running_serve(env, workers=2, extra_args=["--graceful-timeout", "30"]) as server:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda email: sign_up(server, email), emails))
        connected = threading.Barrier(CONCURRENT_LOGINS + 1, timeout=30)

        def login(email: str) -> tuple[int | str, float]:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                # The connection is accepted by a worker before the login is sent.
                assert client.get("/healthz").status_code == 200
                connected.wait()
                try:
                    response = client.post(
                        "/login", json={"email": email, "password": DEFAULT_PASSWORD}
                    )
                except httpx.TransportError as error:
                    return type(error).__name__, time.monotonic()
                return response.status_code, time.monotonic()

        with ThreadPoolExecutor(CONCURRENT_LOGINS) as pool:
            futures = [pool.submit(login, email) for email in emails]
            connected.wait()
            time.sleep(0.5)  # every login has been sent and is hashing or queued for it
            signalled_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            outcomes = [future.result() for future in futures]
        status = server.process.wait(40)
        log = server.log()

    statuses = [outcome for outcome, _ in outcomes]
    assert statuses == [200] * CONCURRENT_LOGINS, statuses
    # The signal came while logins were still in flight (with one hash thread per worker, most
    # of them were still queued for it).
    assert sum(1 for _, at in outcomes if at > signalled_at) >= CONCURRENT_LOGINS // 4
    assert status == 0
    assert "Traceback" not in log


# A client that leaves: its request still does its database work -----------------------------


def users_with(database: dict[str, str], email: str) -> int:
    url = database["DATABASE_URL"]
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.split("///", 1)[1])
        try:
            count: int = connection.execute(
                "SELECT count(*) FROM users WHERE email = ?", (email,)
            ).fetchone()[0]
            return count
        finally:
            connection.close()
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def query() -> int:
        connection = await asyncpg.connect(dsn)
        try:
            found: int = await connection.fetchval(
                "SELECT count(*) FROM users WHERE email = $1", email
            )
            return found
        finally:
            await connection.close()

    return asyncio.run(query())


@pytest.mark.parametrize("server_name", SERVERS)
def test_a_signup_whose_client_leaves_still_creates_the_account(
    tmp_path: Path, database: dict[str, str], server_name: str
) -> None:
    # A slow hash keeps the signup busy well after its client has gone.
    slow = {"ARGON2_MEMORY_COST": "19456", "ARGON2_TIME_COST": "30", "HASH_WORKERS": "1"}
    env = server_env(tmp_path, database, **slow)
    email = new_email()
    body = json.dumps({"name": "Gone", "email": email, "password": DEFAULT_PASSWORD}).encode()
    with running_serve(env, workers=1, server=server_name) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /signup HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.2)  # the server has the request and is hashing
        wait_for(lambda: users_with(database, email) == 1, 20, "the account to be created")
        # The database is not left locked: the next signup goes through at once.
        sign_up(server, new_email())
        assert "Traceback" not in server.log()


# --server hypercorn, and the limits every server is given ------------------------------------


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_hypercorn_serves_the_same_app(tmp_path: Path, database: dict[str, str]) -> None:
    with running_serve(server_env(tmp_path, database), workers=2, server="hypercorn") as server:
        email = new_email()
        sign_up(server, email)
        token = log_in(server, email)
        with ThreadPoolExecutor(4) as pool:
            statuses = list(
                pool.map(
                    lambda _: httpx.get(server.url + "/dashboard", headers=bearer(token)),
                    range(20),
                )
            )
        assert {response.status_code for response in statuses} == {200}
        assert "Welcome Serve!" in statuses[0].text
        assert server.workers_running() == 2
        assert server.stop() == 0
        log = server.log()
    assert log.count('"GET /dashboard 1.1" 200') == 20  # the access log, one line each


def test_serve_gives_hypercorn_the_limits_of_hypercorn_toml() -> None:
    with HYPERCORN_TOML.open("rb") as handle:
        shipped = tomllib.load(handle)
    assert {name: shipped[name] for name in HYPERCORN_SETTINGS} == HYPERCORN_SETTINGS
    assert shipped["access_log_format"] == HYPERCORN_ACCESS_FORMAT
    assert shipped["graceful_timeout"] == DEFAULT_GRACEFUL_TIMEOUT


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_granian_keeps_the_header_limits(tmp_path: Path, database: dict[str, str]) -> None:
    with running_serve(server_env(tmp_path, database), workers=1) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
            )
            try:
                reply = sock.recv(100)
            except ConnectionResetError:  # closed with our bytes unread: the 431 may be lost
                reply = b"reset"
        assert reply.startswith(b"HTTP/1.1 431") or reply == b"reset", reply
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 12_000 + b"\r\n\r\n"
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 200")  # under the limit
        # A connection that sends nothing is closed after the 5 s header timeout.
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
            started = time.monotonic()
            assert sock.recv(100) == b""
            assert time.monotonic() - started < 9
        response = httpx.get(server.url + "/verify?token=secret-in-the-query")
        assert response.status_code == 400
        log = server.log()
    assert '"GET /verify HTTP/1.1" 400' in log  # one access-log line, without the query
    assert "secret-in-the-query" not in log
