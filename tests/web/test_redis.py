"""Redis as the shared revocation list and throttle store (TEST_REDIS_URL), and failing closed."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis

from quart_auth_app import create_app
from quart_auth_app.testing import DEFAULT_PASSWORD, SignedIn, make_user, sign_in

from ..conftest import BROWSER, FAST_HASHING, TEST_REDIS_URL, bearer
from ..servers import free_port, running_server

needs_redis = pytest.mark.skipif(not TEST_REDIS_URL, reason="set TEST_REDIS_URL to run Redis tests")
REFRESH_LIFETIME = 1_209_600


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test (or engineer) sharing the Redis database uses."""
    return f"qaa-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis(redis_prefix: str) -> AsyncIterator[Redis]:
    """A client of the test Redis; every key under this test's prefix is deleted afterwards."""
    assert TEST_REDIS_URL is not None
    client = Redis.from_url(TEST_REDIS_URL)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def app_config(app_config: dict[str, Any], redis_prefix: str) -> dict[str, Any]:
    if TEST_REDIS_URL:
        app_config.update(REDIS_URL=TEST_REDIS_URL, REDIS_KEY_PREFIX=redis_prefix)
    return app_config


def revoked_key(prefix: str, session_id: str) -> str:
    return f"{prefix}:revoked:{session_id}"


@needs_redis
async def test_logout_writes_revocation_key_with_ttl(
    client: Client, signed_in: SignedIn, redis: Redis, redis_prefix: str
) -> None:
    tokens = signed_in.tokens
    response = await client.post("/logout", headers=bearer(tokens.access_token))
    assert response.status_code == 200
    key = revoked_key(redis_prefix, tokens.session_id)
    ttl = await redis.ttl(key)
    # The key outlives every token of the family, and then goes away by itself.
    assert REFRESH_LIFETIME - 60 <= ttl <= REFRESH_LIFETIME
    response = await client.get("/dashboard", headers=bearer(tokens.access_token))
    assert response.status_code == 401


@needs_redis
async def test_logout_all_revokes_every_family_in_redis(
    app: Quart, client: Client, signed_in: SignedIn, redis: Redis, redis_prefix: str
) -> None:
    other = await sign_in(app, signed_in.user)
    await client.post("/logout/all", headers=bearer(signed_in.tokens.access_token))
    for session_id in (signed_in.tokens.session_id, other.session_id):
        assert await redis.exists(revoked_key(redis_prefix, session_id)) == 1
    response = await client.get("/dashboard", headers=bearer(other.access_token))
    assert response.status_code == 401


@pytest.fixture
def no_grace(app_config: dict[str, Any]) -> dict[str, Any]:
    app_config["JWT_REFRESH_GRACE_SECONDS"] = "0"
    return app_config


@needs_redis
async def test_refresh_reuse_announces_family_revocation(
    no_grace: dict[str, Any],
    client: Client,
    signed_in: SignedIn,
    redis: Redis,
    redis_prefix: str,
) -> None:
    first = signed_in.tokens.refresh_token
    rotated = await client.post("/token/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200
    assert (await client.post("/token/refresh", json={"refresh_token": first})).status_code == 401
    assert await redis.exists(revoked_key(redis_prefix, signed_in.tokens.session_id)) == 1
    newest = (await rotated.get_json())["access_token"]
    assert (await client.get("/dashboard", headers=bearer(newest))).status_code == 401


@needs_redis
async def test_revocation_announced_in_redis_alone_refuses_token(
    client: Client, signed_in: SignedIn, redis: Redis, redis_prefix: str
) -> None:
    # As if another instance had just revoked the family: the key is there, this app must obey it.
    tokens = signed_in.tokens
    assert (await client.get("/dashboard", headers=bearer(tokens.access_token))).status_code == 200
    await redis.set(revoked_key(redis_prefix, tokens.session_id), b"1", ex=60)
    response = await client.get("/dashboard", headers=bearer(tokens.access_token))
    assert response.status_code == 401
    refresh = await client.post("/token/refresh", json={"refresh_token": tokens.refresh_token})
    assert refresh.status_code == 401


FRESH_PROCESS_CHECK = """
import asyncio, sys
from redis.asyncio import Redis
from quart_auth_app.revocation import RedisRevocationList

async def main() -> None:
    client = Redis.from_url(sys.argv[1])
    revoked = await RedisRevocationList(client, sys.argv[2]).is_revoked(sys.argv[3])
    await client.aclose()
    print("revoked" if revoked else "live")

asyncio.run(main())
"""


@needs_redis
async def test_fresh_process_sees_logout(
    client: Client, signed_in: SignedIn, redis: Redis, redis_prefix: str
) -> None:
    assert TEST_REDIS_URL is not None
    session_id = signed_in.tokens.session_id

    def ask() -> str:
        args = [sys.executable, "-c", FRESH_PROCESS_CHECK, TEST_REDIS_URL, redis_prefix, session_id]
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True)
        return done.stdout.strip()

    assert await asyncio.to_thread(ask) == "live"
    await client.post("/logout", headers=bearer(signed_in.tokens.access_token))
    assert await asyncio.to_thread(ask) == "revoked"


@pytest.fixture
def small_failure_limit(app_config: dict[str, Any]) -> dict[str, Any]:
    app_config["LOGIN_FAILURES_PER_WINDOW"] = "2"
    return app_config


@needs_redis
async def test_failed_logins_count_in_redis_for_every_app(
    small_failure_limit: dict[str, Any],
    app: Quart,
    client: Client,
    redis: Redis,
    redis_prefix: str,
) -> None:
    await make_user(app, email="bob@example.com")
    wrong = {"email": "bob@example.com", "password": "not the password"}
    for _ in range(2):
        assert (await client.post("/login", json=wrong)).status_code == 401
    assert [key async for key in redis.scan_iter(match=f"{redis_prefix}*")]
    # A second app on the same Redis (another worker or instance) sees the same counter.
    other = create_app(small_failure_limit)
    async with other.test_app():
        right = {"email": "bob@example.com", "password": DEFAULT_PASSWORD}
        response = await other.test_client().post("/login", json=right)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0


# --- Redis configured but unreachable: fail closed. These need no Redis at all. ---


@pytest.fixture
def refused_port() -> int:
    """A loopback port nothing listens on: connections are refused at once."""
    return free_port()


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A loopback port that accepts connections (kernel backlog) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


async def assert_fails_closed(app: Quart) -> None:
    user = await make_user(app, email="cy@example.com")
    tokens = await sign_in(app, user)
    client = app.test_client()
    protected = await client.get("/dashboard", headers=bearer(tokens.access_token))
    assert protected.status_code == 503
    assert "message" in await protected.get_json()
    refresh = await client.post("/token/refresh", json={"refresh_token": tokens.refresh_token})
    assert refresh.status_code == 503
    logout = await client.post("/logout", headers=bearer(tokens.access_token))
    assert logout.status_code == 503
    login = await client.post("/login", json={"email": "cy@example.com", "password": "x" * 12})
    assert login.status_code == 503
    signup = {"name": "Dee", "email": "dee@example.com", "password": DEFAULT_PASSWORD}
    assert (await client.post("/signup", json=signup)).status_code == 503


async def test_unreachable_redis_fails_closed(
    app_config: dict[str, Any], refused_port: int
) -> None:
    app_config["REDIS_URL"] = f"redis://127.0.0.1:{refused_port}/0"
    app = create_app(app_config)
    async with app.test_app():  # start-up does not need Redis
        health = await app.test_client().get("/healthz")
        assert health.status_code == 503
        assert (await health.get_json())["checks"] == {"database": "ok", "redis": "unreachable"}
        await assert_fails_closed(app)
        browser = app.test_client()
        tokens = await sign_in(app, await make_user(app))
        browser.set_cookie("localhost", "jwt_token", tokens.access_token)
        page = await browser.get("/dashboard", headers=BROWSER)
        assert page.status_code == 503  # not a redirect to /login: the token may well be fine


async def test_stalled_redis_fails_closed_within_timeout(tmp_path: Path, stalled_port: int) -> None:
    # Redis behaviour does not depend on the database: one backend is enough here.
    app = create_app(
        {
            **FAST_HASHING,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'stalled.db'}",
            "INSTANCE_PATH": str(tmp_path),
            "REDIS_URL": f"redis://127.0.0.1:{stalled_port}/0",
        }
    )
    async with app.test_app():
        tokens = await sign_in(app, await make_user(app, email="ed@example.com"))
        client = app.test_client()
        started = time.monotonic()
        protected = await client.get("/dashboard", headers=bearer(tokens.access_token))
        login = await client.post("/login", json={"email": "ed@example.com", "password": "x" * 9})
        elapsed = time.monotonic() - started
    assert (protected.status_code, login.status_code) == (503, 503)
    # Bounded by the 2 s socket timeout per request rather than hanging.
    assert elapsed < 2 * 2 + 3


def test_server_starts_with_unreachable_redis_and_refuses_logins(
    tmp_path: Path, refused_port: int
) -> None:
    env = {
        **FAST_HASHING,
        "INSTANCE_PATH": str(tmp_path),
        "REDIS_URL": f"redis://127.0.0.1:{refused_port}/0",
    }
    # /healthz answers (503: Redis is down): start-up did not need Redis.
    with running_server(env, ready_status=503) as server:
        login = httpx.post(server.url + "/login", json={"email": "a@b.io", "password": "x" * 9})
        assert login.status_code == 503
        assert login.json() == {"message": "Service temporarily unavailable"}  # SPEC §9
        assert "Rate-limit store unavailable" in server.log()  # the operator learns which
