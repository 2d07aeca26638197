"""SPEC §6: GET/PATCH/DELETE /me and POST /me/password, for bearer and cookie clients."""

from __future__ import annotations

from typing import Any

from quart import Quart
from sqlalchemy import func, select

from quart_auth_app.models import LoginSession, User
from quart_auth_app.testing import DEFAULT_PASSWORD, SignedIn, cookie_client, db_session, sign_in
from quart_auth_app.web.auth import ACCESS_COOKIE, REFRESH_COOKIE

from ..conftest import bearer

NEW_PASSWORD = "an entirely new passphrase"


async def count_users(app: Quart) -> int:
    async with db_session(app) as db:
        return int((await db.execute(select(func.count()).select_from(User))).scalar_one())


async def count_login_sessions(app: Quart) -> int:
    async with db_session(app) as db:
        query = select(func.count()).select_from(LoginSession)
        return int((await db.execute(query)).scalar_one())


async def login(client: Any, password: str, email: str = "ann@example.com") -> Any:
    return await client.post("/login", json={"email": email, "password": password})


# GET /me ---------------------------------------------------------------------------------


async def test_me_shows_the_account(client: Any, signed_in: SignedIn) -> None:
    response = await client.get("/me", headers=bearer(signed_in.tokens.access_token))
    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"public_id", "name", "email", "email_verified", "created_at"}
    assert body["public_id"] == signed_in.user.public_id
    assert body["name"] == "Ann" and body["email"] == "ann@example.com"
    assert body["email_verified"] is False
    assert response.headers["Cache-Control"] == "no-store"


async def test_me_works_with_the_cookie(app: Quart, user: Any) -> None:
    client = await cookie_client(app, user)
    response = await client.get("/me")
    assert response.status_code == 200
    assert (await response.get_json())["email"] == "ann@example.com"


async def test_me_without_a_token_is_401(client: Any) -> None:
    response = await client.get("/me")
    assert response.status_code == 401
    assert await response.get_json() == {"message": "Token is missing!"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.headers["Cache-Control"] == "no-store"


# PATCH /me -------------------------------------------------------------------------------


async def test_rename_with_json(client: Any, signed_in: SignedIn) -> None:
    auth = bearer(signed_in.tokens.access_token)
    response = await client.patch("/me", json={"name": "  Annabel  "}, headers=auth)
    assert response.status_code == 200
    assert (await response.get_json())["name"] == "Annabel"
    assert response.headers["Cache-Control"] == "no-store"
    assert (await (await client.get("/me", headers=auth)).get_json())["name"] == "Annabel"


async def test_rename_with_a_form(client: Any, signed_in: SignedIn) -> None:
    auth = bearer(signed_in.tokens.access_token)
    response = await client.patch("/me", form={"name": "Anna"}, headers=auth)
    assert response.status_code == 200
    assert (await response.get_json())["name"] == "Anna"


async def test_rename_ignores_other_fields(client: Any, signed_in: SignedIn) -> None:
    auth = bearer(signed_in.tokens.access_token)
    response = await client.patch(
        "/me",
        json={"name": "Anna", "email": "evil@example.com", "email_verified": True, "id": 9},
        headers=auth,
    )
    assert response.status_code == 200
    body = await (await client.get("/me", headers=auth)).get_json()
    assert body["email"] == "ann@example.com" and body["email_verified"] is False


async def test_rename_validates_the_name(client: Any, signed_in: SignedIn) -> None:
    auth = bearer(signed_in.tokens.access_token)
    for name in ("", "   ", "x" * 101, "bad\x07name", 42, None):
        response = await client.patch("/me", json={"name": name}, headers=auth)
        assert response.status_code == 400, name
        body = await response.get_json()
        assert body["message"] and "name" in body["errors"]
    after = await (await client.get("/me", headers=auth)).get_json()
    assert after["name"] == "Ann"


async def test_rename_accepts_exactly_100_characters(client: Any, signed_in: SignedIn) -> None:
    auth = bearer(signed_in.tokens.access_token)
    response = await client.patch("/me", json={"name": "é" * 100}, headers=auth)
    assert response.status_code == 200
    assert (await response.get_json())["name"] == "é" * 100


async def test_rename_needs_a_token(client: Any) -> None:
    response = await client.patch("/me", json={"name": "Anna"})
    assert response.status_code == 401


# POST /me/password -----------------------------------------------------------------------


async def test_change_password_revokes_other_sessions_only(
    app: Quart, client: Any, signed_in: SignedIn
) -> None:
    other = await sign_in(app, signed_in.user, user_agent="other device")
    current = bearer(signed_in.tokens.access_token)
    response = await client.post(
        "/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
        headers=current,
    )
    assert response.status_code == 204
    assert await response.get_data() == b""
    assert response.headers["Cache-Control"] == "no-store"
    # The session that changed the password keeps working, access and refresh alike.
    assert (await client.get("/me", headers=current)).status_code == 200
    kept = await client.post(
        "/token/refresh", json={"refresh_token": signed_in.tokens.refresh_token}
    )
    assert kept.status_code == 200
    # Every other session is dead at once.
    assert (await client.get("/me", headers=bearer(other.access_token))).status_code == 401
    gone = await client.post("/token/refresh", json={"refresh_token": other.refresh_token})
    assert gone.status_code == 401
    # Only the new password logs in.
    assert (await login(client, DEFAULT_PASSWORD)).status_code == 401
    assert (await login(client, NEW_PASSWORD)).status_code == 200


async def test_change_password_with_a_form_and_cookies(app: Quart, user: Any) -> None:
    browser = await cookie_client(app, user)
    other = await sign_in(app, user)
    response = await browser.post(
        "/me/password",
        form={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204
    assert (await browser.get("/me")).status_code == 200
    probe = app.test_client()
    assert (await probe.get("/me", headers=bearer(other.access_token))).status_code == 401


async def test_change_password_refuses_a_wrong_current_password(
    client: Any, signed_in: SignedIn
) -> None:
    auth = bearer(signed_in.tokens.access_token)
    response = await client.post(
        "/me/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers=auth,
    )
    # A form error, not a 401: the caller's token is fine, only the password is wrong.
    assert response.status_code == 400
    assert "current_password" in (await response.get_json())["errors"]
    assert (await login(client, DEFAULT_PASSWORD)).status_code == 200
    assert (await client.get("/me", headers=auth)).status_code == 200


async def test_change_password_applies_the_new_password_rules(
    client: Any, signed_in: SignedIn
) -> None:
    auth = bearer(signed_in.tokens.access_token)
    for new in ("short", "password123", "x" * 1025, "pass\x00word-long"):
        response = await client.post(
            "/me/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": new},
            headers=auth,
        )
        assert response.status_code == 400, new
        assert "new_password" in (await response.get_json())["errors"]
    assert (await login(client, DEFAULT_PASSWORD)).status_code == 200


async def test_change_password_requires_both_fields(client: Any, signed_in: SignedIn) -> None:
    auth = bearer(signed_in.tokens.access_token)
    response = await client.post("/me/password", json={}, headers=auth)
    assert response.status_code == 400
    assert set((await response.get_json())["errors"]) == {"current_password", "new_password"}


async def test_change_password_needs_a_token(client: Any) -> None:
    response = await client.post(
        "/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 401


# DELETE /me ------------------------------------------------------------------------------


async def test_delete_me_removes_the_account_and_every_token(
    app: Quart, client: Any, signed_in: SignedIn
) -> None:
    other = await sign_in(app, signed_in.user)
    auth = bearer(signed_in.tokens.access_token)
    response = await client.delete("/me", json={"password": DEFAULT_PASSWORD}, headers=auth)
    assert response.status_code == 204
    assert response.headers["Cache-Control"] == "no-store"
    assert await count_users(app) == 0
    assert await count_login_sessions(app) == 0
    for token in (signed_in.tokens.access_token, other.access_token):
        dead = await client.get("/me", headers=bearer(token))
        assert dead.status_code == 401
        assert await dead.get_json() == {"message": "Token is invalid!"}
    for refresh in (signed_in.tokens.refresh_token, other.refresh_token):
        refused = await client.post("/token/refresh", json={"refresh_token": refresh})
        assert refused.status_code == 401
    assert (await login(client, DEFAULT_PASSWORD)).status_code == 401


async def test_delete_me_clears_the_cookies(app: Quart, user: Any) -> None:
    browser = await cookie_client(app, user)
    response = await browser.delete("/me", form={"password": DEFAULT_PASSWORD})
    assert response.status_code == 204
    cleared = response.headers.get_all("Set-Cookie")
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        assert any(c.startswith(f"{name}=;") and "Max-Age=0" in c for c in cleared), cleared
    assert (await browser.get("/me")).status_code == 401
    assert await count_users(app) == 0


async def test_delete_me_then_signup_again_with_the_same_email(
    client: Any, signed_in: SignedIn
) -> None:
    auth = bearer(signed_in.tokens.access_token)
    assert (
        await client.delete("/me", json={"password": DEFAULT_PASSWORD}, headers=auth)
    ).status_code == 204
    again = await client.post(
        "/signup", json={"name": "Ann", "email": "ann@example.com", "password": NEW_PASSWORD}
    )
    assert again.status_code == 201
    assert (await again.get_json())["public_id"] != signed_in.user.public_id
    assert (await client.get("/me", headers=auth)).status_code == 401


async def test_delete_me_refuses_a_wrong_or_missing_password(
    app: Quart, client: Any, signed_in: SignedIn
) -> None:
    auth = bearer(signed_in.tokens.access_token)
    wrong = await client.delete("/me", json={"password": "not my password"}, headers=auth)
    assert wrong.status_code == 400
    assert "password" in (await wrong.get_json())["errors"]
    missing = await client.delete("/me", json={}, headers=auth)
    assert missing.status_code == 400
    assert "password" in (await missing.get_json())["errors"]
    assert await count_users(app) == 1
    assert (await client.get("/me", headers=auth)).status_code == 200


async def test_delete_me_needs_a_token(app: Quart, client: Any, user: Any) -> None:
    response = await client.delete("/me", json={"password": DEFAULT_PASSWORD})
    assert response.status_code == 401
    assert await count_users(app) == 1


async def test_guessing_the_current_password_is_throttled(client: Any, signed_in: SignedIn) -> None:
    auth = bearer(signed_in.tokens.access_token)
    wrong = {"current_password": "guess guess", "new_password": NEW_PASSWORD}
    for _ in range(10):
        assert (await client.post("/me/password", json=wrong, headers=auth)).status_code == 400
    throttled = await client.post("/me/password", json=wrong, headers=auth)
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    deleting = await client.delete("/me", json={"password": DEFAULT_PASSWORD}, headers=auth)
    assert deleting.status_code == 429
