"""SPEC §5: refresh rotation, digest-only storage, replay inside and after the grace window, races."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import select, text, update

from quart_auth_app.models import LoginSession, RefreshToken, utcnow
from quart_auth_app.testing import SignedIn, db_session, make_user, mint_token, sign_in
from quart_auth_app.tokens import token_digest
from quart_auth_app.web.auth import ACCESS_COOKIE, REFRESH_COOKIE

from ..conftest import BROWSER, bearer


async def refresh(app: Quart, token: str) -> Any:
    return await app.test_client().post("/token/refresh", json={"refresh_token": token})


async def refreshed_pair(app: Quart, token: str) -> dict[str, Any]:
    response = await refresh(app, token)
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


async def works(app: Quart, access_token: str) -> bool:
    response = await app.test_client().get("/dashboard", headers=bearer(access_token))
    assert response.status_code in (200, 401)
    return bool(response.status_code == 200)


def set_cookies(response: Any) -> dict[str, str]:
    """The Set-Cookie headers of a response, by cookie name."""
    return {value.split("=", 1)[0]: value for value in response.headers.getlist("Set-Cookie")}


async def run_sql(app: Quart, statement: Any) -> Any:
    async with db_session(app) as db:
        result = await db.execute(statement)
        await db.commit()
        return result


async def test_json_refresh_rotates_both_tokens(app: Quart, signed_in: SignedIn) -> None:
    response = await refresh(app, signed_in.tokens.refresh_token)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.get_json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["refresh_token"] != signed_in.tokens.refresh_token
    assert body["access_token"] != signed_in.tokens.access_token
    assert "Set-Cookie" not in response.headers, "a JSON refresh token stays out of cookies"
    assert await works(app, body["access_token"])
    assert (await refresh(app, body["refresh_token"])).status_code == 200


async def test_form_refresh_from_an_api_client_gets_json(app: Quart, signed_in: SignedIn) -> None:
    response = await app.test_client().post(
        "/token/refresh", form={"refresh_token": signed_in.tokens.refresh_token}
    )
    assert response.status_code == 200
    assert await works(app, (await response.get_json())["access_token"])


async def test_cookie_refresh_rotates_the_cookies(app: Quart, signed_in: SignedIn) -> None:
    client = app.test_client()
    client.set_cookie("localhost", REFRESH_COOKIE, signed_in.tokens.refresh_token)
    response = await client.post("/token/refresh")
    assert response.status_code == 200
    body = await response.get_json()
    cookies = set_cookies(response)
    assert cookies[ACCESS_COOKIE].startswith(f"{ACCESS_COOKIE}={body['access_token']};")
    assert cookies[REFRESH_COOKIE].startswith(f"{REFRESH_COOKIE}={body['refresh_token']};")
    for cookie in cookies.values():
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert (await client.get("/dashboard")).status_code == 200
    assert (await client.post("/token/refresh")).status_code == 200, "the jar holds the new one"
    assert (await refresh(app, signed_in.tokens.refresh_token)).status_code == 401


async def test_browser_form_refresh_redirects_with_fresh_cookies(
    app: Quart, signed_in: SignedIn
) -> None:
    client = app.test_client()
    client.set_cookie("localhost", REFRESH_COOKIE, signed_in.tokens.refresh_token)
    response = await client.post("/token/refresh", form={"next": "/me"}, headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["Location"] == "/me"
    assert set(set_cookies(response)) == {ACCESS_COOKIE, REFRESH_COOKIE}
    again = await client.post("/token/refresh", form={"next": "//evil.example"}, headers=BROWSER)
    assert again.status_code == 302 and again.headers["Location"] == "/dashboard"


async def test_browser_with_a_dead_refresh_cookie_goes_to_login_cookies_cleared(
    app: Quart, signed_in: SignedIn
) -> None:
    client = app.test_client()
    client.set_cookie("localhost", REFRESH_COOKIE, signed_in.tokens.access_token)
    response = await client.post("/token/refresh", headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    cookies = set_cookies(response)
    assert set(cookies) == {ACCESS_COOKIE, REFRESH_COOKIE}
    assert all("Max-Age=0" in cookie for cookie in cookies.values())


async def test_refresh_without_a_token_is_missing(app: Quart) -> None:
    response = await app.test_client().post("/token/refresh", json={})
    assert response.status_code == 401
    assert await response.get_json() == {"message": "Token is missing!"}
    browser = await app.test_client().post("/token/refresh", headers=BROWSER)
    assert browser.status_code == 302 and browser.headers["Location"] == "/login"


@pytest.mark.parametrize("value", [42, ["x"], {"a": 1}, "x" * 10_000])
async def test_malformed_refresh_input_is_a_client_error(app: Quart, value: Any) -> None:
    response = await app.test_client().post("/token/refresh", json={"refresh_token": value})
    assert response.status_code in (400, 401)


async def test_only_a_digest_of_each_refresh_token_is_stored(
    app: Quart, signed_in: SignedIn
) -> None:
    rotated = await refreshed_pair(app, signed_in.tokens.refresh_token)
    issued = [signed_in.tokens.refresh_token, rotated["refresh_token"]]
    rows = (await run_sql(app, select(RefreshToken))).scalars().all()
    assert {row.digest for row in rows} == {token_digest(token) for token in issued}
    dump = await run_sql(app, text("SELECT * FROM refresh_tokens"))
    stored = repr(dump.all())
    sessions = repr((await run_sql(app, text("SELECT * FROM login_sessions"))).all())
    for token in issued:
        for part in token.split("."):
            assert part not in stored and part not in sessions


async def test_replay_inside_the_grace_window_is_refused_but_the_family_lives(
    app: Quart, signed_in: SignedIn
) -> None:
    first = await refreshed_pair(app, signed_in.tokens.refresh_token)
    replay = await refresh(app, signed_in.tokens.refresh_token)
    assert replay.status_code == 401
    assert await replay.get_json() == {"message": "Token is invalid!"}
    assert await works(app, first["access_token"])
    second = await refreshed_pair(app, first["refresh_token"])
    assert await works(app, second["access_token"])


async def late_replay_kills_the_family(app: Quart, signed_in: SignedIn) -> None:
    other = await sign_in(app, signed_in.user)
    newest = await refreshed_pair(app, signed_in.tokens.refresh_token)
    assert await works(app, newest["access_token"])
    assert (await refresh(app, signed_in.tokens.refresh_token)).status_code == 401
    assert (await refresh(app, newest["refresh_token"])).status_code == 401
    assert not await works(app, newest["access_token"])
    assert not await works(app, signed_in.tokens.access_token)
    session = await run_sql(
        app, select(LoginSession).where(LoginSession.id == signed_in.tokens.session_id)
    )
    assert session.scalar_one().revoked_at is not None
    assert await works(app, other.access_token), "other logins of the user are not touched"


async def test_replay_after_the_grace_window_revokes_the_family(
    app: Quart, signed_in: SignedIn
) -> None:
    original = signed_in.tokens.refresh_token
    newest = await refreshed_pair(app, original)
    await run_sql(
        app,
        update(RefreshToken)
        .where(RefreshToken.digest == token_digest(original))
        .values(used_at=utcnow() - timedelta(seconds=11)),
    )
    assert (await refresh(app, original)).status_code == 401
    assert (await refresh(app, newest["refresh_token"])).status_code == 401
    assert not await works(app, newest["access_token"])


class TestNoGrace:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, "JWT_REFRESH_GRACE_SECONDS": "0"}

    async def test_any_replay_revokes_the_family(self, app: Quart, signed_in: SignedIn) -> None:
        await asyncio.sleep(0.01)  # used_at must lie strictly in the past
        await late_replay_kills_the_family(app, signed_in)


async def test_ten_concurrent_refreshes_one_winner(app: Quart, signed_in: SignedIn) -> None:
    token = signed_in.tokens.refresh_token
    responses = await asyncio.gather(*(refresh(app, token) for _ in range(10)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [401] * 9
    winner = next(response for response in responses if response.status_code == 200)
    pair = await winner.get_json()
    assert await works(app, pair["access_token"]), "racing losers must not revoke the family"
    assert (await refresh(app, pair["refresh_token"])).status_code == 200
    rows = (await run_sql(app, select(RefreshToken))).scalars().all()
    assert len(rows) == 3, "one login + one rotation + the follow-up rotation"


async def test_concurrent_refreshes_of_many_families(app: Quart) -> None:
    users = [await make_user(app, name=f"U{n}") for n in range(3)]
    pairs = [await sign_in(app, user) for user in users for _ in range(2)]
    calls = [refresh(app, pair.refresh_token) for pair in pairs for _ in range(3)]
    statuses = [response.status_code for response in await asyncio.gather(*calls)]
    for index in range(len(pairs)):
        assert sorted(statuses[index * 3 : index * 3 + 3]) == [200, 401, 401]


async def test_refresh_is_refused_for_an_unstored_or_expired_token(
    app: Quart, signed_in: SignedIn
) -> None:
    public_id, session_id = signed_in.user.public_id, signed_in.tokens.session_id
    unstored = mint_token(app, public_id, session_id, token_type="refresh")
    assert (await refresh(app, unstored)).status_code == 401
    expired = mint_token(app, public_id, session_id, token_type="refresh", exp=int(time.time()) - 1)
    assert (await refresh(app, expired)).status_code == 401
    assert (await refresh(app, signed_in.tokens.refresh_token)).status_code == 200


async def test_refresh_of_a_deleted_user_is_refused(app: Quart, signed_in: SignedIn) -> None:
    await run_sql(app, text("DELETE FROM users"))
    assert (await refresh(app, signed_in.tokens.refresh_token)).status_code == 401


async def test_refresh_slides_the_session_forward(app: Quart, signed_in: SignedIn) -> None:
    query = select(LoginSession).where(LoginSession.id == signed_in.tokens.session_id)
    before = (await run_sql(app, query)).scalar_one()
    await asyncio.sleep(0.01)
    await refreshed_pair(app, signed_in.tokens.refresh_token)
    after = (await run_sql(app, query)).scalar_one()
    assert after.last_used_at > before.last_used_at
    assert after.expires_at > before.expires_at
