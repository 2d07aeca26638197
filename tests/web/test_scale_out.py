"""Scale-out: both backends answer hostile text alike, PostgreSQL pooler settings, and two real
server instances (plus a two-worker one) sharing one PostgreSQL and one Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from quart.typing import TestClientProtocol as Client
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from quart_auth_app.config import load_settings
from quart_auth_app.db import asyncpg_arguments, create_engine
from quart_auth_app.testing import DEFAULT_PASSWORD, SignedIn

from ..conftest import TEST_DATABASE_URL, TEST_REDIS_URL, bearer
from ..servers import FAST_HASHING, Server, child_environment, start_server

# Other test runs share TEST_DATABASE_URL's database; this module uses databases of its own.


@contextmanager
def own_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database beside TEST_DATABASE_URL's, dropped afterwards."""
    assert TEST_DATABASE_URL is not None
    url = make_url(TEST_DATABASE_URL)
    name = f"{prefix}_{os.getpid()}"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(False)
    asyncio.run(
        _admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    )
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(admin_url: str, *statements: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[str]:
    with own_database("qaa_scale_app") as url:
        yield url


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """As conftest's, but PostgreSQL tests here get this module's own database."""
    if backend == "postgresql":
        url: str = request.getfixturevalue("private_postgres")
        return url
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


# --- Text PostgreSQL refuses (NUL, lone surrogates) is a validation error on every backend. ---

HOSTILE = ["nul\x00inside", "lone \ud800 surrogate"]
GOOD_PASSWORD = "another good passphrase"


def hostile_requests(value: str) -> list[tuple[str, str, dict[str, str], bool]]:
    """(method, path, JSON body, signed in?) with `value` in one text field each."""
    signup = {"name": "Zed", "email": "zed@example.com", "password": GOOD_PASSWORD}
    return [
        ("POST", "/signup", {**signup, "name": value}, False),
        ("POST", "/signup", {**signup, "email": value}, False),
        ("POST", "/signup", {**signup, "password": GOOD_PASSWORD + value}, False),
        ("POST", "/login", {"email": value, "password": GOOD_PASSWORD}, False),
        ("POST", "/login", {"email": "ann@example.com", "password": value}, False),
        ("POST", "/password/forgot", {"email": value}, False),
        ("POST", "/password/reset", {"token": value, "new_password": GOOD_PASSWORD}, False),
        ("POST", "/verify", {"token": value}, False),
        ("PATCH", "/me", {"name": value}, True),
        ("POST", "/me/password", {"current_password": value, "new_password": GOOD_PASSWORD}, True),
        ("POST", "/me/password", {"current_password": "x" * 9, "new_password": value * 3}, True),
        ("DELETE", "/me", {"password": value}, True),
    ]


@pytest.mark.parametrize("value", HOSTILE, ids=["nul", "surrogate"])
async def test_text_postgres_refuses_is_a_400_on_every_backend(
    client: Client, signed_in: SignedIn, value: str
) -> None:
    auth = bearer(signed_in.tokens.access_token)
    for method, path, body, signed in hostile_requests(value):
        headers = {"Content-Type": "application/json", **(auth if signed else {})}
        # ensure_ascii keeps the surrogate as a \ud800 escape, as a hostile client would send it.
        response = await client.open(path, method=method, data=json.dumps(body), headers=headers)
        assert response.status_code == 400, (method, path, body)
        assert "message" in await response.get_json()
    assert (await client.get("/me", headers=auth)).status_code == 200  # nothing was half-done


async def test_refresh_token_with_nul_is_refused_not_crashed(client: Client) -> None:
    response = await client.post("/token/refresh", json={"refresh_token": "a\x00b"})
    assert response.status_code in (400, 401)


@pytest.mark.parametrize("session_id", ["a%00b", "x" * 300, "%ED%A0%80"])
async def test_session_id_postgres_cannot_hold_is_not_found(
    client: Client, signed_in: SignedIn, session_id: str
) -> None:
    response = await client.delete(
        f"/me/sessions/{session_id}", headers=bearer(signed_in.tokens.access_token)
    )
    assert response.status_code == 404


@pytest.fixture
def behind_one_proxy(app_config: dict[str, Any]) -> dict[str, Any]:
    app_config["TRUSTED_PROXIES"] = "1"
    return app_config


async def session_address(client: Client, headers: dict[str, str]) -> dict[str, Any]:
    """Log Ann in with these headers; the new session as /me/sessions lists it."""
    login = await client.post(
        "/login", json={"email": "ann@example.com", "password": DEFAULT_PASSWORD}, headers=headers
    )
    assert login.status_code == 200
    token = (await login.get_json())["access_token"]
    listed = await (await client.get("/me/sessions", headers=bearer(token))).get_json()
    current: dict[str, Any] = next(s for s in listed["sessions"] if s["current"])
    return current


@pytest.mark.parametrize("forwarded", ["1" * 200, "not-an-address", "10.0.0.1, <script>"])
async def test_forwarded_garbage_is_never_stored_as_the_address(
    behind_one_proxy: dict[str, Any], client: Client, user: Any, forwarded: str
) -> None:
    peer = (await session_address(client, {}))["client_address"]
    garbage = {"X-Forwarded-For": forwarded, "User-Agent": "u" * 1000}
    session = await session_address(client, garbage)
    assert session["client_address"] == peer  # the socket peer instead
    assert len(session["user_agent"]) == 300


async def test_forwarded_address_of_trusted_proxy_is_used(
    behind_one_proxy: dict[str, Any], client: Client, user: Any
) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.9, 2001:db8::7"}
    assert (await session_address(client, forwarded))["client_address"] == "2001:db8::7"


# --- PostgreSQL behind a pooler: statement caching can be switched off. ---


def test_statement_cache_zero_uses_unique_statement_names() -> None:
    arguments = asyncpg_arguments(0)
    assert arguments["statement_cache_size"] == 0
    assert arguments["prepared_statement_cache_size"] == 0
    make_name = arguments["prepared_statement_name_func"]
    assert make_name() != make_name()
    assert "prepared_statement_name_func" not in asyncpg_arguments(100)


needs_postgres = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="set TEST_DATABASE_URL to run PostgreSQL tests"
)


@pytest.fixture
def without_statement_cache(app_config: dict[str, Any]) -> dict[str, Any]:
    app_config["DATABASE_STATEMENT_CACHE_SIZE"] = "0"
    return app_config


@needs_postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_app_serves_on_postgres_without_statement_cache(
    without_statement_cache: dict[str, Any], client: Client, signed_in: SignedIn
) -> None:
    auth = bearer(signed_in.tokens.access_token)
    for _ in range(5):  # the same statements again: nothing cached, nothing colliding
        assert (await client.get("/dashboard", headers=auth)).status_code == 200
        assert (await client.get("/me/sessions", headers=auth)).status_code == 200


@needs_postgres
async def test_postgres_engine_is_sized_and_replaces_connections_the_server_closed(
    tmp_path: Path,
) -> None:
    assert TEST_DATABASE_URL is not None
    settings = load_settings(
        {},
        {
            "DATABASE_URL": TEST_DATABASE_URL,
            "INSTANCE_PATH": str(tmp_path),
            "DATABASE_POOL_SIZE": "7",
            "DATABASE_TIMEOUT": "3",
        },
    )
    engine = create_engine(settings)
    try:
        assert engine.pool.size() == 7  # type: ignore[attr-defined]
        assert engine.pool.timeout() == 3  # type: ignore[attr-defined]
        async with engine.connect() as conn:
            first = await conn.scalar(text("SELECT pg_backend_pid()"))
        dsn = make_url(TEST_DATABASE_URL).set(drivername="postgresql")
        killer = await asyncpg.connect(dsn.render_as_string(hide_password=False))
        try:  # what a server restart or an administrator does to the pooled connection
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await killer.close()
        async with engine.connect() as conn:  # checked before use, replaced: no error
            assert await conn.scalar(text("SELECT pg_backend_pid()")) != first
    finally:
        await engine.dispose()


# --- Two instances (and a two-worker one) on one PostgreSQL and one Redis. ---

needs_both = pytest.mark.skipif(
    not (TEST_DATABASE_URL and TEST_REDIS_URL),
    reason="set TEST_DATABASE_URL and TEST_REDIS_URL to run the multi-instance tests",
)
FAILURE_LIMIT = 3


@dataclass
class Cluster:
    """Three instances sharing one database, one Redis and one secret."""

    a: Server
    b: Server
    workers2: Server

    @property
    def all(self) -> list[Server]:
        return [self.a, self.b, self.workers2]


def _migrate_from_two_hosts(url: str, instance: Path) -> None:
    """`quart-auth-app db upgrade`, as two deploy jobs might run it at the same moment."""
    # PostgreSQL deployments create the schema before starting the app (it never does on PG).
    script = Path(sys.executable).with_name("quart-auth-app")
    env = child_environment({"DATABASE_URL": url, "INSTANCE_PATH": str(instance)})
    jobs = [
        subprocess.Popen(
            [str(script), "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    for job in jobs:
        output, _ = job.communicate(timeout=120)
        assert job.returncode == 0, output.decode(errors="replace")


@pytest.fixture(scope="module")
def scale_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The instances' database, schema made by the CLI as a PostgreSQL deployment does."""
    with own_database("qaa_scale") as url:
        _migrate_from_two_hosts(url, tmp_path_factory.mktemp("migrate"))
        yield url


@pytest.fixture(scope="module")
def cluster(scale_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    assert TEST_REDIS_URL is not None
    prefix = f"qaa-scale-{uuid.uuid4().hex[:12]}"
    shared = {
        **FAST_HASHING,
        "DATABASE_URL": scale_database,
        "REDIS_URL": TEST_REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        # Every instance must verify every other's tokens: one key for all.
        "SECRET_KEY": "scale-out-secret-shared-by-every-instance-0123456789",
        "LOGIN_FAILURES_PER_WINDOW": str(FAILURE_LIMIT),
        "AUTH_ATTEMPTS_PER_MINUTE": "10000",
        "JWT_REFRESH_GRACE_SECONDS": "0",
    }

    def env(name: str) -> dict[str, str]:
        return {**shared, "INSTANCE_PATH": str(tmp_path_factory.mktemp(name))}

    servers: list[Server] = []
    try:
        with ThreadPoolExecutor(3) as pool:  # start together, as a deployment would
            futures = [
                pool.submit(start_server, env("a")),
                pool.submit(start_server, env("b")),
                pool.submit(start_server, env("w2"), workers=2),
            ]
            for future in futures:
                if future.exception() is None:
                    servers.append(future.result())
            for future in futures:
                future.result()  # re-raises a start-up failure, after collecting the others
        yield Cluster(*servers)
    finally:
        for server in servers:
            server.stop()
            server.log_path.unlink(missing_ok=True)
        _delete_keys(TEST_REDIS_URL, prefix)


def _delete_keys(redis_url: str, prefix: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def signup(server: Server) -> dict[str, str]:
    """A new user created through one instance; returns its credentials."""
    email = f"u-{uuid.uuid4().hex[:10]}@example.com"
    body = {"name": "Scale", "email": email, "password": DEFAULT_PASSWORD}
    assert httpx.post(server.url + "/signup", json=body).status_code == 201
    return {"email": email, "password": DEFAULT_PASSWORD}


def login(server: Server, credentials: dict[str, str]) -> dict[str, Any]:
    response = httpx.post(server.url + "/login", json=credentials)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def dashboard(server: Server, access_token: str) -> int:
    return httpx.get(server.url + "/dashboard", headers=bearer(access_token)).status_code


def refresh(server: Server, refresh_token: str) -> httpx.Response:
    return httpx.post(server.url + "/token/refresh", json={"refresh_token": refresh_token})


@needs_both
def test_token_from_one_instance_works_on_every_other(cluster: Cluster) -> None:
    credentials = signup(cluster.a)
    tokens = login(cluster.b, credentials)
    for server in cluster.all:
        assert dashboard(server, tokens["access_token"]) == 200
    me = httpx.get(cluster.workers2.url + "/me", headers=bearer(tokens["access_token"]))
    assert me.json()["email"] == credentials["email"]


@needs_both
def test_logout_on_one_instance_is_refused_on_every_other_at_once(cluster: Cluster) -> None:
    tokens = login(cluster.a, signup(cluster.a))
    assert dashboard(cluster.b, tokens["access_token"]) == 200
    out = httpx.post(cluster.a.url + "/logout", headers=bearer(tokens["access_token"]))
    assert out.status_code == 200
    # No wait, no retry: the very next request elsewhere is refused.
    assert dashboard(cluster.b, tokens["access_token"]) == 401
    assert dashboard(cluster.workers2, tokens["access_token"]) == 401
    assert refresh(cluster.b, tokens["refresh_token"]).status_code == 401


@needs_both
def test_logout_all_on_one_instance_ends_sessions_opened_on_others(cluster: Cluster) -> None:
    credentials = signup(cluster.a)
    on_a, on_b = login(cluster.a, credentials), login(cluster.b, credentials)
    everywhere = httpx.post(cluster.b.url + "/logout/all", headers=bearer(on_b["access_token"]))
    assert everywhere.status_code == 200
    assert dashboard(cluster.a, on_a["access_token"]) == 401
    assert refresh(cluster.workers2, on_a["refresh_token"]).status_code == 401


@needs_both
def test_failed_logins_count_across_instances(cluster: Cluster) -> None:
    credentials = signup(cluster.a)
    wrong = {**credentials, "password": "not the password at all"}
    for server in (cluster.a, cluster.b, cluster.workers2)[:FAILURE_LIMIT]:
        assert httpx.post(server.url + "/login", json=wrong).status_code == 401
    for server in cluster.all:  # even the right password now waits, on every instance
        response = httpx.post(server.url + "/login", json=credentials)
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) > 0


@needs_both
def test_refresh_reuse_is_detected_across_instances(cluster: Cluster) -> None:
    first = login(cluster.a, signup(cluster.a))
    rotated = refresh(cluster.b, first["refresh_token"])
    assert rotated.status_code == 200
    second = rotated.json()
    # The stolen, already-rotated token replayed on a third instance: refused, family ended.
    assert refresh(cluster.workers2, first["refresh_token"]).status_code == 401
    assert dashboard(cluster.a, second["access_token"]) == 401
    assert refresh(cluster.a, second["refresh_token"]).status_code == 401


@needs_both
def test_concurrent_refresh_on_two_instances_has_one_winner(cluster: Cluster) -> None:
    tokens = login(cluster.a, signup(cluster.a))
    with ThreadPoolExecutor(4) as pool:
        servers = [cluster.a, cluster.b, cluster.workers2, cluster.b]
        results = list(pool.map(lambda s: refresh(s, tokens["refresh_token"]), servers))
    assert sorted(r.status_code for r in results) == [200, 401, 401, 401]


@needs_both
def test_two_worker_instance_serves_from_both_workers(cluster: Cluster) -> None:
    tokens = login(cluster.workers2, signup(cluster.a))

    def one_request(_: int) -> int:
        with httpx.Client() as fresh:  # a new connection each time, so either worker may take it
            return fresh.get(
                cluster.workers2.url + "/dashboard", headers=bearer(tokens["access_token"])
            ).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one_request, range(80)))
    assert set(statuses) == {200}
    assert len(cluster.workers2.worker_pids()) == 2
    assert all(server.alive() for server in cluster.all)


@needs_both
def test_no_instance_logged_an_error(cluster: Cluster) -> None:
    # Runs last: everything above happened without a crash or an unhandled error anywhere.
    for server in cluster.all:
        assert server.alive()
        assert "Traceback" not in server.log()
        assert "status=500" not in server.log()
