"""SPEC §7 throttling: failed logins per (email, address), attempts per address, 429 + Retry-After.

Every rule runs on the in-memory store and, with TEST_REDIS_URL set, on Redis (under a key
prefix of its own, so engineers and tests sharing the database never see each other's counters).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from quart import Quart

from quart_auth_app import create_app
from quart_auth_app.testing import DEFAULT_PASSWORD, make_user

from ..conftest import BROWSER, TEST_REDIS_URL
from ..servers import free_port

STORES = ["memory"] + (["redis"] if TEST_REDIS_URL else [])
WRONG = "not the right password"


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def limits() -> dict[str, str]:
    """Throttle settings for the test; tests override entries before the app is built."""
    return {}


@pytest.fixture
def app_config(app_config: dict[str, Any], store: str, limits: dict[str, str]) -> dict[str, Any]:
    if store == "redis":
        assert TEST_REDIS_URL is not None
        prefix = f"qaa-throttle-test-{uuid.uuid4().hex[:12]}"
        app_config.update(REDIS_URL=TEST_REDIS_URL, REDIS_KEY_PREFIX=prefix)
    app_config.update(limits)
    return app_config


def peer(address: str) -> dict[str, Any]:
    """Request arguments that make the socket peer `address`."""
    return {"scope_base": {"client": (address, 40000)}}


async def login(
    client: Any, email: str, password: str, address: str = "192.0.2.1", **kwargs: Any
) -> Any:
    body = {"email": email, "password": password}
    return await client.post("/login", json=body, **peer(address), **kwargs)


def retry_after(response: Any) -> int:
    assert response.status_code == 429
    value = int(response.headers["Retry-After"])
    assert value >= 1
    return value


@pytest.fixture
async def ann(app: Quart) -> Any:
    return await make_user(app, name="Ann", email="ann@example.com")


# Failed logins per (email, address) -------------------------------------------------------


async def test_ten_failures_lock_the_pair_with_retry_after(client: Any, ann: Any) -> None:
    for _ in range(10):
        assert (await login(client, "ann@example.com", WRONG)).status_code == 401
    locked = await login(client, "ann@example.com", WRONG)
    assert 890 <= retry_after(locked) <= 900
    assert (await locked.get_json())["message"]
    # The right password does not get through either while the pair is locked.
    assert retry_after(await login(client, "ann@example.com", DEFAULT_PASSWORD)) <= 900


async def test_a_locked_pair_leaves_others_alone(app: Quart, client: Any, ann: Any) -> None:
    await make_user(app, name="Bob", email="bob@example.com")
    for _ in range(11):
        await login(client, "ann@example.com", WRONG, address="192.0.2.1")
    # Another email from the same address, and the same email from another address.
    assert (await login(client, "bob@example.com", DEFAULT_PASSWORD)).status_code == 200
    assert (await login(client, "bob@example.com", WRONG)).status_code == 401
    other = await login(client, "ann@example.com", DEFAULT_PASSWORD, address="198.51.100.7")
    assert other.status_code == 200


async def test_email_spellings_share_one_counter(client: Any, ann: Any) -> None:
    for spelling in ["ann@example.com", "ANN@example.com", " Ann@EXAMPLE.com "] * 4:
        await login(client, spelling, WRONG)
    retry_after(await login(client, "ann@example.com", DEFAULT_PASSWORD))


async def test_unknown_emails_are_throttled_like_known_ones(client: Any) -> None:
    for _ in range(10):
        assert (await login(client, "nobody@example.com", WRONG)).status_code == 401
    retry_after(await login(client, "nobody@example.com", WRONG))


@pytest.mark.parametrize("limits", [{"LOGIN_FAILURES_PER_WINDOW": "3"}])
async def test_a_success_clears_the_failures(client: Any, ann: Any) -> None:
    for _ in range(2):
        await login(client, "ann@example.com", WRONG)
    assert (await login(client, "ann@example.com", DEFAULT_PASSWORD)).status_code == 200
    for _ in range(3):
        assert (await login(client, "ann@example.com", WRONG)).status_code == 401
    retry_after(await login(client, "ann@example.com", WRONG))


@pytest.mark.parametrize(
    "limits", [{"LOGIN_FAILURES_PER_WINDOW": "2", "LOGIN_FAILURE_WINDOW_SECONDS": "2"}]
)
async def test_the_lock_ends_when_the_window_passes(client: Any, ann: Any) -> None:
    for _ in range(2):
        await login(client, "ann@example.com", WRONG)
    locked = await login(client, "ann@example.com", DEFAULT_PASSWORD)
    wait = retry_after(locked)
    assert wait <= 2
    await asyncio.sleep(wait + 0.2)
    assert (await login(client, "ann@example.com", DEFAULT_PASSWORD)).status_code == 200


async def test_throttled_browser_sees_the_form_with_429(client: Any, ann: Any) -> None:
    for _ in range(10):
        await login(client, "ann@example.com", WRONG)
    page = await client.post(
        "/login",
        form={"email": "ann@example.com", "password": WRONG},
        headers=BROWSER,
        **peer("192.0.2.1"),
    )
    assert page.status_code == 429
    assert int(page.headers["Retry-After"]) >= 1
    assert "Too many attempts" in await page.get_data(as_text=True)


# Attempts per address ---------------------------------------------------------------------


@pytest.mark.parametrize("limits", [{"AUTH_ATTEMPTS_PER_MINUTE": "5"}])
async def test_attempts_per_address_count_logins_and_signups(client: Any, ann: Any) -> None:
    await login(client, "ann@example.com", DEFAULT_PASSWORD)
    await login(client, "x@example.com", WRONG)
    body = {"name": "Cy", "email": "cy@example.com", "password": "correct horse battery"}
    assert (await client.post("/signup", json=body, **peer("192.0.2.1"))).status_code == 201
    # Malformed bodies are attempts too: parsing comes after counting.
    await client.post(
        "/login", data=b"{", headers={"Content-Type": "application/json"}, **peer("192.0.2.1")
    )
    await login(client, "ann@example.com", DEFAULT_PASSWORD)
    limited = await login(client, "ann@example.com", DEFAULT_PASSWORD)
    assert 1 <= retry_after(limited) <= 60
    signup = {**body, "email": "dee@example.com"}
    retry_after(await client.post("/signup", json=signup, **peer("192.0.2.1")))
    # Another address is not affected.
    assert (
        await login(client, "ann@example.com", DEFAULT_PASSWORD, "203.0.113.9")
    ).status_code == 200


@pytest.mark.parametrize("limits", [{"AUTH_ATTEMPTS_PER_MINUTE": "3"}])
async def test_other_routes_are_not_counted(client: Any, ann: Any) -> None:
    for _ in range(10):
        assert (await client.get("/healthz", **peer("192.0.2.1"))).status_code == 200
        assert (await client.get("/login", **peer("192.0.2.1"))).status_code == 200
    assert (await login(client, "ann@example.com", DEFAULT_PASSWORD)).status_code == 200


async def test_the_default_is_one_hundred_attempts_a_minute(client: Any) -> None:
    statuses = [
        (await login(client, f"user{i}@example.com", WRONG, "192.0.2.50")).status_code
        for i in range(101)
    ]
    assert statuses[:100] == [401] * 100
    assert statuses[100] == 429


# Switches and proxies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "limits", [{"RATE_LIMIT_ENABLED": "false", "AUTH_ATTEMPTS_PER_MINUTE": "2"}]
)
async def test_rate_limit_enabled_false_switches_everything_off(client: Any, ann: Any) -> None:
    for _ in range(15):
        assert (await login(client, "ann@example.com", WRONG)).status_code == 401
    assert (await login(client, "ann@example.com", DEFAULT_PASSWORD)).status_code == 200


@pytest.mark.parametrize("limits", [{"LOGIN_FAILURES_PER_WINDOW": "2"}])
async def test_forwarded_for_is_ignored_without_trusted_proxies(client: Any, ann: Any) -> None:
    for i in range(2):
        forged = {"X-Forwarded-For": f"203.0.113.{i}"}
        await login(client, "ann@example.com", WRONG, headers=forged)
    fresh_header = {"X-Forwarded-For": "203.0.113.200"}
    retry_after(await login(client, "ann@example.com", DEFAULT_PASSWORD, headers=fresh_header))


@pytest.mark.parametrize("limits", [{"LOGIN_FAILURES_PER_WINDOW": "2", "TRUSTED_PROXIES": "1"}])
async def test_forwarded_for_counts_behind_a_trusted_proxy(client: Any, ann: Any) -> None:
    proxy = "10.0.0.2"
    alice_pc = {"X-Forwarded-For": "198.51.100.1"}
    for _ in range(2):
        await login(client, "ann@example.com", WRONG, proxy, headers=alice_pc)
    retry_after(await login(client, "ann@example.com", DEFAULT_PASSWORD, proxy, headers=alice_pc))
    # Another client behind the same proxy is its own address.
    other_pc = {"X-Forwarded-For": "spoofed-by-client, 198.51.100.2"}
    response = await login(client, "ann@example.com", DEFAULT_PASSWORD, proxy, headers=other_pc)
    assert response.status_code == 200


@pytest.mark.parametrize("limits", [{"LOGIN_FAILURES_PER_WINDOW": "2", "TRUSTED_PROXIES": "1"}])
async def test_garbage_forwarded_for_falls_back_to_the_peer(client: Any, ann: Any) -> None:
    for junk in ("not-an-address", "<script>"):
        await login(client, "ann@example.com", WRONG, "10.0.0.3", headers={"X-Forwarded-For": junk})
    locked = await login(client, "ann@example.com", DEFAULT_PASSWORD, "10.0.0.3")
    retry_after(locked)


# The store must be reachable: never silently unthrottled ----------------------------------


async def test_unreachable_redis_refuses_login_and_signup(app_config: dict[str, Any]) -> None:
    app_config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    application = create_app(app_config)
    async with application.test_app():
        client = application.test_client()
        response = await login(client, "ann@example.com", DEFAULT_PASSWORD)
        assert response.status_code == 503
        assert (await response.get_json())["message"]
        body = {"name": "Cy", "email": "cy@example.com", "password": "correct horse battery"}
        assert (await client.post("/signup", json=body)).status_code == 503
