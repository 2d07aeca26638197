"""SPEC §4-§5: browser cookies, silent renewal from the refresh cookie, header versus cookie."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from itsdangerous import BadSignature
from quart import Quart

from quart_auth_app.testing import DEFAULT_PASSWORD, SignedIn, make_user, mint_token, sign_in
from quart_auth_app.web.auth import ACCESS_COOKIE, REFRESH_COOKIE

from ..conftest import BROWSER, bearer


def cookie_client(app: Quart, access: str | None, refresh: str | None) -> Any:
    client = app.test_client()
    if access is not None:
        client.set_cookie("localhost", ACCESS_COOKIE, access)
    if refresh is not None:
        client.set_cookie("localhost", REFRESH_COOKIE, refresh)
    return client


def jar(client: Any) -> dict[str, str]:
    return {cookie.name: cookie.value for cookie in client.cookie_jar}


def set_cookies(response: Any) -> dict[str, str]:
    return {value.split("=", 1)[0]: value for value in response.headers.getlist("Set-Cookie")}


def expired_access(app: Quart, signed_in: SignedIn) -> str:
    now = int(time.time())
    return mint_token(
        app,
        signed_in.user.public_id,
        signed_in.tokens.session_id,
        iat=now - 4000,
        nbf=now - 4000,
        exp=now - 400,
    )


async def test_login_sets_both_cookies_with_safe_attributes(app: Quart, user: Any) -> None:
    response = await app.test_client().post(
        "/login", form={"email": "ann@example.com", "password": DEFAULT_PASSWORD}, headers=BROWSER
    )
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard"
    cookies = set_cookies(response)
    assert set(cookies) == {ACCESS_COOKIE, REFRESH_COOKIE}
    for cookie in cookies.values():
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie, "COOKIE_SECURE=auto over plain http"
    assert "Max-Age=3600" in cookies[ACCESS_COOKIE]
    assert "Max-Age=1209600" in cookies[REFRESH_COOKIE]


async def test_cookies_are_secure_over_https_by_default(app: Quart, user: Any) -> None:
    response = await app.test_client().post(
        "/login",
        form={"email": "ann@example.com", "password": DEFAULT_PASSWORD},
        headers=BROWSER,
        scheme="https",
    )
    assert response.status_code == 302
    assert all("Secure" in cookie for cookie in set_cookies(response).values())


async def test_expired_access_cookie_is_renewed_from_the_refresh_cookie(
    app: Quart, signed_in: SignedIn
) -> None:
    client = cookie_client(app, expired_access(app, signed_in), signed_in.tokens.refresh_token)
    response = await client.get("/dashboard", headers=BROWSER)
    assert response.status_code == 200
    assert "Welcome Ann! You are logged in." in await response.get_data(as_text=True)
    cookies = set_cookies(response)
    assert set(cookies) == {ACCESS_COOKIE, REFRESH_COOKIE}
    assert all("HttpOnly" in c and "SameSite=Lax" in c for c in cookies.values())
    fresh = jar(client)
    assert fresh[REFRESH_COOKIE] != signed_in.tokens.refresh_token
    replay = await app.test_client().post(
        "/token/refresh", json={"refresh_token": signed_in.tokens.refresh_token}
    )
    assert replay.status_code == 401, "renewal rotated: the old refresh token is used up"
    again = await client.get("/dashboard", headers=BROWSER)
    assert again.status_code == 200
    assert "Set-Cookie" not in again.headers, "a valid access cookie needs no renewal"


async def test_a_browser_that_dropped_the_access_cookie_is_renewed(
    app: Quart, signed_in: SignedIn
) -> None:
    """The access cookie's Max-Age ends with the token, so usually only the refresh one is left."""
    client = cookie_client(app, None, signed_in.tokens.refresh_token)
    response = await client.get("/dashboard", headers=BROWSER)
    assert response.status_code == 200
    assert set(jar(client)) == {ACCESS_COOKIE, REFRESH_COOKIE}


async def test_api_clients_with_cookies_are_renewed_too(app: Quart, signed_in: SignedIn) -> None:
    client = cookie_client(app, expired_access(app, signed_in), signed_in.tokens.refresh_token)
    response = await client.get("/dashboard")
    assert response.status_code == 200
    assert await response.get_json() == {"message": "Welcome Ann! You are logged in."}


async def test_an_invalid_refresh_cookie_sends_the_browser_to_login(
    app: Quart, signed_in: SignedIn
) -> None:
    for refresh in ("garbage", signed_in.tokens.access_token):
        client = cookie_client(app, expired_access(app, signed_in), refresh)
        response = await client.get("/dashboard", headers=BROWSER)
        assert response.status_code == 302
        assert response.headers["Location"] == "/login"
        cookies = set_cookies(response)
        assert set(cookies) == {ACCESS_COOKIE, REFRESH_COOKIE}
        assert all("Max-Age=0" in cookie for cookie in cookies.values())
        assert jar(client) == {}


async def test_a_revoked_family_is_not_renewed(app: Quart, signed_in: SignedIn) -> None:
    await app.test_client().post("/logout", headers=bearer(signed_in.tokens.access_token))
    client = cookie_client(app, expired_access(app, signed_in), signed_in.tokens.refresh_token)
    response = await client.get("/dashboard")
    assert response.status_code == 401
    assert await response.get_json() == {"message": "Token is invalid!"}
    assert jar(client) == {}


async def test_protected_pages_remember_where_the_browser_was_going(app: Quart) -> None:
    response = await app.test_client().get("/me/sessions", headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fme%2Fsessions"


async def test_two_tabs_renewing_at_once_keep_the_browser_signed_in(
    app: Quart, signed_in: SignedIn
) -> None:
    """Both tabs send the same refresh cookie: one renews, the other must not wipe the cookies."""
    refresh = signed_in.tokens.refresh_token
    tabs = [cookie_client(app, None, refresh) for _ in range(2)]
    responses = await asyncio.gather(*(tab.get("/dashboard", headers=BROWSER) for tab in tabs))
    assert sorted(r.status_code for r in responses) == [200, 302]
    loser = next(r for r in responses if r.status_code == 302)
    assert "Set-Cookie" not in loser.headers
    winner = tabs[[r.status_code for r in responses].index(200)]
    assert (await winner.get("/dashboard", headers=BROWSER)).status_code == 200


async def test_the_header_wins_over_a_bad_cookie(app: Quart, signed_in: SignedIn) -> None:
    client = cookie_client(app, "garbage", "garbage")
    response = await client.get("/dashboard", headers=bearer(signed_in.tokens.access_token))
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers, "the cookies were never looked at"


async def test_a_bad_header_is_not_rescued_by_a_good_cookie(
    app: Quart, signed_in: SignedIn
) -> None:
    client = cookie_client(app, signed_in.tokens.access_token, signed_in.tokens.refresh_token)
    for header in ("Bearer garbage", "Bearer ", "Basic dXNlcjpwYXNz"):
        response = await client.get("/dashboard", headers={"Authorization": header})
        assert response.status_code == 401
        assert await response.get_json() == {"message": "Token is invalid!"}
    assert (await client.get("/dashboard")).status_code == 200


async def test_the_header_user_is_the_one_served(app: Quart, signed_in: SignedIn) -> None:
    bob = await sign_in(app, await make_user(app, name="Bob", email="bob@example.com"))
    client = cookie_client(app, signed_in.tokens.access_token, signed_in.tokens.refresh_token)
    response = await client.get("/dashboard", headers=bearer(bob.access_token))
    assert await response.get_json() == {"message": "Welcome Bob! You are logged in."}
    logout = await client.post("/logout", headers=bearer(bob.access_token))
    assert logout.status_code == 200
    assert (await client.get("/dashboard")).status_code == 401, "logout also clears the jar"
    ann = await app.test_client().get("/dashboard", headers=bearer(signed_in.tokens.access_token))
    assert ann.status_code == 200, "only the header's session ended"


async def test_the_flash_cookie_is_signed_with_the_current_secret(app: Quart) -> None:
    # A key change must reach the flash cookie's signer at once.
    interface = app.session_interface
    first = interface.get_signing_serializer(app)
    assert first is not None
    cookie = first.dumps({"_flashes": [["success", "hello"]]})
    previous = app.secret_key
    app.secret_key = f"{previous}-rotated"
    try:
        rotated = interface.get_signing_serializer(app)
        assert rotated is not None
        assert rotated.loads_unsafe(cookie)[0] is False  # the old key's signature is refused
        app.config["SECRET_KEY_FALLBACKS"] = [previous]
        with_fallback = interface.get_signing_serializer(app)
        assert with_fallback is not None
        assert with_fallback.loads(cookie) == {"_flashes": [["success", "hello"]]}
    finally:
        app.secret_key = previous
        app.config["SECRET_KEY_FALLBACKS"] = []


async def test_the_flash_cookie_signer_follows_a_key_change(app: Quart) -> None:
    # The signer is built once per set of keys: a rotated SECRET_KEY (with the old one as a
    # fallback) must still read cookies signed before, and sign new ones with the new key.
    interface = app.session_interface
    signer = interface.get_signing_serializer(app)
    assert signer is not None and interface.get_signing_serializer(app) is signer
    old_cookie = signer.dumps({"_flashes": [("success", "hello")]})
    old_key = app.secret_key
    app.secret_key = "a-rotated-secret-key-that-is-long-enough-0123"
    app.config["SECRET_KEY_FALLBACKS"] = [old_key]
    rotated = interface.get_signing_serializer(app)
    assert rotated is not None and rotated is not signer
    assert rotated.loads(old_cookie) == {"_flashes": [("success", "hello")]}
    assert rotated.dumps({}) != signer.dumps({})
    app.config["SECRET_KEY_FALLBACKS"] = []
    only_new = interface.get_signing_serializer(app)
    assert only_new is not None
    with pytest.raises(BadSignature):
        only_new.loads(old_cookie)
