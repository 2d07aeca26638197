"""SPEC §5: logout, logout everywhere, the session list, revoking one session, failing closed."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import func, select

from quart_auth_app import sessions as login_sessions
from quart_auth_app.errors import ServiceUnavailable
from quart_auth_app.models import LoginSession, RefreshToken, utcnow
from quart_auth_app.testing import (
    DEFAULT_PASSWORD,
    SignedIn,
    app_services,
    db_session,
    make_user,
    sign_in,
)
from quart_auth_app.web.auth import ACCESS_COOKIE, REFRESH_COOKIE

from ..conftest import BROWSER, bearer

SESSION_FIELDS = {"id", "created_at", "last_used_at", "user_agent", "client_address", "current"}


async def status(app: Quart, access_token: str) -> int:
    response = await app.test_client().get("/dashboard", headers=bearer(access_token))
    return int(response.status_code)


async def refresh_status(app: Quart, refresh_token: str) -> int:
    response = await app.test_client().post("/token/refresh", json={"refresh_token": refresh_token})
    return int(response.status_code)


def cleared(response: Any) -> dict[str, str]:
    """The Set-Cookie headers that delete a cookie, by cookie name."""
    found = {}
    for value in response.headers.getlist("Set-Cookie"):
        name, _, rest = value.partition("=")
        if rest.startswith(";") and "Max-Age=0" in rest and "1970" in rest:
            found[name] = value
    return found


def assert_cookies_cleared(response: Any, secure: bool = False) -> None:
    cookies = cleared(response)
    assert set(cookies) == {ACCESS_COOKIE, REFRESH_COOKIE}
    for cookie in cookies.values():
        assert "Path=/" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert ("Secure" in cookie) is secure
    auth_cookies = [
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith((f"{ACCESS_COOKIE}=", f"{REFRESH_COOKIE}="))
    ]
    assert len(auth_cookies) == 2, "nothing sets them again"


async def sessions_of(app: Quart, access_token: str) -> list[dict[str, Any]]:
    response = await app.test_client().get("/me/sessions", headers=bearer(access_token))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    found: list[dict[str, Any]] = (await response.get_json())["sessions"]
    return found


async def test_logout_kills_the_access_token_and_its_family(
    app: Quart, signed_in: SignedIn
) -> None:
    other = await sign_in(app, signed_in.user)
    tokens = signed_in.tokens
    response = await app.test_client().post("/logout", headers=bearer(tokens.access_token))
    assert response.status_code == 200
    assert await response.get_json() == {"message": "Logged out."}
    assert_cookies_cleared(response)
    assert await status(app, tokens.access_token) == 401
    assert await refresh_status(app, tokens.refresh_token) == 401
    assert await status(app, other.access_token) == 200, "only this login ends"
    again = await app.test_client().post("/logout", headers=bearer(tokens.access_token))
    assert again.status_code == 401


async def test_logout_kills_tokens_issued_by_rotation_too(app: Quart, signed_in: SignedIn) -> None:
    rotated = await app.test_client().post(
        "/token/refresh", json={"refresh_token": signed_in.tokens.refresh_token}
    )
    pair = await rotated.get_json()
    assert (
        await app.test_client().post("/logout", headers=bearer(pair["access_token"]))
    ).status_code == 200
    assert await status(app, signed_in.tokens.access_token) == 401
    assert await refresh_status(app, pair["refresh_token"]) == 401


async def test_cookie_logout_clears_both_cookies(app: Quart, signed_in: SignedIn) -> None:
    client = app.test_client()
    client.set_cookie("localhost", ACCESS_COOKIE, signed_in.tokens.access_token)
    client.set_cookie("localhost", REFRESH_COOKIE, signed_in.tokens.refresh_token)
    response = await client.post("/logout")
    assert response.status_code == 200
    assert_cookies_cleared(response)
    assert client.cookie_jar is not None and not list(client.cookie_jar)
    assert await status(app, signed_in.tokens.access_token) == 401


async def test_browser_form_logout_redirects_to_login(app: Quart, signed_in: SignedIn) -> None:
    client = app.test_client()
    client.set_cookie("localhost", ACCESS_COOKIE, signed_in.tokens.access_token)
    client.set_cookie("localhost", REFRESH_COOKIE, signed_in.tokens.refresh_token)
    response = await client.post("/logout", form={}, headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert_cookies_cleared(response)
    follow = await client.get("/dashboard", headers=BROWSER)
    assert follow.status_code == 302 and follow.headers["Location"] == "/login"


async def test_logout_with_an_expired_access_cookie_still_ends_the_session(
    app: Quart, signed_in: SignedIn
) -> None:
    """Silent renewal runs first, but must not hand out cookies on the way out."""
    client = app.test_client()
    client.set_cookie("localhost", REFRESH_COOKIE, signed_in.tokens.refresh_token)
    response = await client.post("/logout", headers=BROWSER)
    assert response.status_code == 302
    assert_cookies_cleared(response)
    assert await refresh_status(app, signed_in.tokens.refresh_token) == 401
    assert await status(app, signed_in.tokens.access_token) == 401


class TestSecureCookies:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, "COOKIE_SECURE": "true"}

    async def test_cleared_cookies_keep_the_secure_attribute(
        self, app: Quart, signed_in: SignedIn
    ) -> None:
        response = await app.test_client().post(
            "/logout", headers=bearer(signed_in.tokens.access_token)
        )
        assert_cookies_cleared(response, secure=True)


async def test_logout_needs_a_token(app: Quart) -> None:
    response = await app.test_client().post("/logout")
    assert response.status_code == 401
    assert await response.get_json() == {"message": "Token is missing!"}


async def test_logout_all_kills_every_token_of_the_user(app: Quart, signed_in: SignedIn) -> None:
    second = await sign_in(app, signed_in.user)
    third = await sign_in(app, signed_in.user)
    bob = await sign_in(app, await make_user(app, name="Bob", email="bob@example.com"))
    response = await app.test_client().post("/logout/all", headers=bearer(second.access_token))
    assert response.status_code == 200
    assert await response.get_json() == {"message": "Logged out everywhere."}
    assert_cookies_cleared(response)
    for pair in (signed_in.tokens, second, third):
        assert await status(app, pair.access_token) == 401
        assert await refresh_status(app, pair.refresh_token) == 401
    assert await status(app, bob.access_token) == 200, "other users are not touched"
    login = await app.test_client().post(
        "/login", json={"email": "ann@example.com", "password": DEFAULT_PASSWORD}
    )
    assert await status(app, (await login.get_json())["access_token"]) == 200


async def test_browser_logout_all_redirects_to_login(app: Quart, signed_in: SignedIn) -> None:
    client = app.test_client()
    client.set_cookie("localhost", ACCESS_COOKIE, signed_in.tokens.access_token)
    response = await client.post("/logout/all", headers=BROWSER)
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert_cookies_cleared(response)


async def test_session_list_has_one_entry_per_live_family(app: Quart, signed_in: SignedIn) -> None:
    login = await app.test_client().post(
        "/login",
        json={"email": "ann@example.com", "password": DEFAULT_PASSWORD},
        headers={"User-Agent": "Firefox/130"},
    )
    mine = await login.get_json()
    await app.test_client().post("/token/refresh", json={"refresh_token": mine["refresh_token"]})
    doomed = await sign_in(app, signed_in.user)
    await app.test_client().post("/logout", headers=bearer(doomed.access_token))
    await sign_in(app, await make_user(app, name="Bob", email="bob@example.com"))

    sessions = await sessions_of(app, mine["access_token"])
    assert len(sessions) == 2, "rotation adds no entry; ended and foreign sessions are absent"
    for session in sessions:
        assert set(session) == SESSION_FIELDS
    current = [session for session in sessions if session["current"]]
    assert len(current) == 1
    assert current[0]["user_agent"] == "Firefox/130"
    assert current[0]["client_address"]
    assert {session["id"] for session in sessions} == {
        current[0]["id"],
        signed_in.tokens.session_id,
    }
    assert doomed.session_id not in {session["id"] for session in sessions}
    other_view = await sessions_of(app, signed_in.tokens.access_token)
    assert [s["current"] for s in other_view if s["id"] == signed_in.tokens.session_id] == [True]


async def test_session_list_by_cookie(app: Quart, signed_in: SignedIn) -> None:
    client = app.test_client()
    client.set_cookie("localhost", ACCESS_COOKIE, signed_in.tokens.access_token)
    response = await client.get("/me/sessions")
    assert response.status_code == 200
    (session,) = (await response.get_json())["sessions"]
    assert session["id"] == signed_in.tokens.session_id and session["current"] is True
    assert (await app.test_client().get("/me/sessions")).status_code == 401


async def test_deleting_a_session_kills_its_tokens(app: Quart, signed_in: SignedIn) -> None:
    phone = await sign_in(app, signed_in.user)
    client = app.test_client()
    response = await client.delete(
        f"/me/sessions/{phone.session_id}", headers=bearer(signed_in.tokens.access_token)
    )
    assert response.status_code == 204
    assert await status(app, phone.access_token) == 401
    assert await refresh_status(app, phone.refresh_token) == 401
    assert await status(app, signed_in.tokens.access_token) == 200
    listed = {s["id"] for s in await sessions_of(app, signed_in.tokens.access_token)}
    assert listed == {signed_in.tokens.session_id}
    twice = await client.delete(
        f"/me/sessions/{phone.session_id}", headers=bearer(signed_in.tokens.access_token)
    )
    assert twice.status_code == 404


async def test_deleting_the_current_session_signs_out(app: Quart, signed_in: SignedIn) -> None:
    tokens = signed_in.tokens
    response = await app.test_client().delete(
        f"/me/sessions/{tokens.session_id}", headers=bearer(tokens.access_token)
    )
    assert response.status_code == 204
    assert await status(app, tokens.access_token) == 401


@pytest.mark.parametrize(
    "session_id", ["no-such-session", "x" * 40, "%00", "a%20b", "%E2%98%83", "'; DROP TABLE users"]
)
async def test_unknown_or_malformed_session_ids_are_404(
    app: Quart, signed_in: SignedIn, session_id: str
) -> None:
    response = await app.test_client().delete(
        f"/me/sessions/{session_id}", headers=bearer(signed_in.tokens.access_token)
    )
    assert response.status_code == 404
    assert await status(app, signed_in.tokens.access_token) == 200


async def test_someone_elses_session_is_404_and_survives(app: Quart, signed_in: SignedIn) -> None:
    bob = await sign_in(app, await make_user(app, name="Bob", email="bob@example.com"))
    response = await app.test_client().delete(
        f"/me/sessions/{bob.session_id}", headers=bearer(signed_in.tokens.access_token)
    )
    assert response.status_code == 404
    assert await response.get_json() == {"message": "Session not found"}
    assert await status(app, bob.access_token) == 200


class Unreachable:
    """A revocation store that is down."""

    async def is_revoked(self, session_id: str) -> bool:
        raise ServiceUnavailable("Revocation store unavailable")

    async def revoke(self, session_ids: Any, ttl: timedelta) -> None:
        raise ServiceUnavailable("Revocation store unavailable")


async def assert_fails_closed(app: Quart, signed_in: SignedIn) -> None:
    tokens = signed_in.tokens
    by_header = await app.test_client().get("/dashboard", headers=bearer(tokens.access_token))
    assert by_header.status_code == 503
    assert "message" in await by_header.get_json()
    client = app.test_client()
    client.set_cookie("localhost", ACCESS_COOKIE, tokens.access_token)
    client.set_cookie("localhost", REFRESH_COOKIE, tokens.refresh_token)
    assert (await client.get("/dashboard")).status_code == 503
    assert (await client.get("/dashboard", headers=BROWSER)).status_code == 503
    assert await refresh_status(app, tokens.refresh_token) == 503


async def test_an_unreachable_revocation_store_fails_closed(
    app: Quart, signed_in: SignedIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_services(app).sessions, "revocations", Unreachable())
    await assert_fails_closed(app, signed_in)


class TestClosedRedisPort:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, "REDIS_URL": "redis://127.0.0.1:1/0", "RATE_LIMIT_ENABLED": "false"}

    async def test_unreachable_redis_means_503_never_200(
        self, app: Quart, signed_in: SignedIn
    ) -> None:
        await assert_fails_closed(app, signed_in)


TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")


@pytest.mark.skipif(
    not TEST_REDIS_URL, reason="set TEST_REDIS_URL to test the Redis revocation list"
)
class TestRedisRevocationList:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, "REDIS_URL": TEST_REDIS_URL, "RATE_LIMIT_ENABLED": "false"}

    async def test_logout_is_announced_in_redis(self, app: Quart, signed_in: SignedIn) -> None:
        redis = app_services(app).redis
        assert redis is not None
        key = f"qaa:revoked:{signed_in.tokens.session_id}"
        assert not await redis.exists(key)
        await app.test_client().post("/logout", headers=bearer(signed_in.tokens.access_token))
        assert await redis.exists(key)
        assert 0 < await redis.ttl(key) <= 1_209_600
        await redis.delete(key)

    async def test_a_session_listed_in_redis_is_refused(
        self, app: Quart, signed_in: SignedIn
    ) -> None:
        redis = app_services(app).redis
        assert redis is not None
        key = f"qaa:revoked:{signed_in.tokens.session_id}"
        assert await status(app, signed_in.tokens.access_token) == 200
        await redis.set(key, b"1", ex=60)
        try:
            assert await status(app, signed_in.tokens.access_token) == 401
            assert await refresh_status(app, signed_in.tokens.refresh_token) == 401
        finally:
            await redis.delete(key)


async def count(app: Quart, model: Any) -> int:
    async with db_session(app) as db:
        return int(await db.scalar(select(func.count()).select_from(model)) or 0)


async def test_cleanup_deletes_expired_rows_in_bounded_batches(
    app: Quart, signed_in: SignedIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(login_sessions, "CLEANUP_BATCH", 3)
    now = utcnow()
    long_ago = now - timedelta(days=30)
    async with db_session(app) as db:
        for index in range(7):  # expired sessions, each with an expired token
            session_id = f"expired-{index}"
            db.add(
                LoginSession(
                    id=session_id,
                    user_id=signed_in.user.id,
                    created_at=long_ago,
                    last_used_at=long_ago,
                    expires_at=now - timedelta(seconds=1),
                )
            )
            db.add(
                RefreshToken(
                    digest=secrets.token_bytes(32),
                    session_id=session_id,
                    expires_at=now - timedelta(seconds=1),
                )
            )
        db.add(
            LoginSession(
                id="revoked-long-ago",
                user_id=signed_in.user.id,
                created_at=long_ago,
                last_used_at=long_ago,
                expires_at=now + timedelta(days=1),
                revoked_at=long_ago,
            )
        )
        db.add(
            LoginSession(
                id="revoked-recently",
                user_id=signed_in.user.id,
                created_at=now,
                last_used_at=now,
                expires_at=now + timedelta(days=1),
                revoked_at=now,
            )
        )
        for _ in range(4):  # used, expired tokens of the live session
            db.add(
                RefreshToken(
                    digest=secrets.token_bytes(32),
                    session_id=signed_in.tokens.session_id,
                    expires_at=now - timedelta(seconds=1),
                    used_at=long_ago,
                )
            )
        await db.commit()
    assert await count(app, LoginSession) == 10 and await count(app, RefreshToken) == 12

    sessions = app_services(app).sessions
    batches = []
    async with db_session(app) as db:
        while deleted := await sessions.cleanup(db):
            assert deleted <= 6, "one call deletes at most a batch of each kind"
            batches.append(deleted)
    assert len(batches) >= 4 and sum(batches) <= 11 + 8
    async with db_session(app) as db:
        left = set((await db.execute(select(LoginSession.id))).scalars())
        tokens = list((await db.execute(select(RefreshToken))).scalars())
    assert left == {signed_in.tokens.session_id, "revoked-recently"}
    assert len(tokens) == 1 and tokens[0].used_at is None
    assert await status(app, signed_in.tokens.access_token) == 200
