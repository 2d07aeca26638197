"""SPEC §3-§4: the tutorial's routes, status codes and messages, for API clients and browsers."""

from __future__ import annotations

from typing import Any

from quart import Quart

from quart_auth_app.testing import DEFAULT_PASSWORD, db_session, make_user

from ..conftest import BROWSER, bearer

SIGNUP = {"name": "Ann", "email": "ann@example.com", "password": "correct horse battery"}


async def test_pages_render(client: Any) -> None:
    for path, marker in (
        ("/", b"Log in"),
        ("/login", b"Log in"),
        ("/signup", b"Create an account"),
    ):
        response = await client.get(path, headers=BROWSER)
        assert response.status_code == 200
        assert marker in await response.get_data()
        assert "Content-Security-Policy" in response.headers


async def test_json_signup_returns_201_with_public_fields(client: Any) -> None:
    response = await client.post("/signup", json=SIGNUP)
    assert response.status_code == 201
    body = await response.get_json()
    assert set(body) == {"public_id", "name", "email"}
    assert body["name"] == "Ann" and body["email"] == "ann@example.com"


async def test_form_signup_redirects_browser_to_login(client: Any) -> None:
    response = await client.post("/signup", form=SIGNUP, headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    page = await client.get("/login", headers=BROWSER)
    assert b"Account created, please log in." in await page.get_data()


async def test_form_signup_asking_for_json_gets_json(client: Any) -> None:
    # Without the Accept header this is the tutorial's client (tests/test_tutorial_clients.py).
    response = await client.post("/signup", form=SIGNUP, headers={"Accept": "application/json"})
    assert response.status_code == 201
    assert (await response.get_json())["email"] == "ann@example.com"


async def test_duplicate_email_is_refused_case_insensitively(client: Any) -> None:
    await client.post("/signup", json=SIGNUP)
    response = await client.post("/signup", json={**SIGNUP, "email": "ANN@Example.COM"})
    assert response.status_code == 400
    assert await response.get_json() == {"message": "User already exists. Please login."}


async def test_duplicate_email_rerenders_the_form_for_browsers(client: Any) -> None:
    await client.post("/signup", json=SIGNUP)
    response = await client.post("/signup", form=SIGNUP, headers=BROWSER)
    assert response.status_code == 400
    page = await response.get_data(as_text=True)
    assert "User already exists. Please login." in page
    assert 'value="ann@example.com"' in page
    assert SIGNUP["password"] not in page


async def test_invalid_signup_names_each_field(client: Any) -> None:
    response = await client.post(
        "/signup", json={"name": " ", "email": "nope", "password": "short"}
    )
    assert response.status_code == 400
    body = await response.get_json()
    assert set(body["errors"]) == {"name", "email", "password"}
    assert body["message"]


async def test_missing_fields_and_wrong_types_are_400(client: Any) -> None:
    missing = await client.post("/signup", json={})
    assert missing.status_code == 400
    assert set((await missing.get_json())["errors"]) == {"name", "email", "password"}
    wrong = await client.post("/signup", json={**SIGNUP, "name": 42, "password": ["x"]})
    assert wrong.status_code == 400
    assert set((await wrong.get_json())["errors"]) == {"name", "password"}


async def test_malformed_json_and_wrong_content_type_are_400(client: Any) -> None:
    bad = await client.post(
        "/signup", data=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    assert "JSON" in (await bad.get_json())["message"]
    text = await client.post("/login", data=b"email=x", headers={"Content-Type": "text/plain"})
    assert text.status_code == 400
    assert "content type" in (await text.get_json())["message"].lower()


async def test_json_login_returns_token_pair(client: Any, user: Any) -> None:
    response = await client.post(
        "/login", json={"email": "ann@example.com", "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.get_json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600


async def test_login_email_is_case_insensitive(client: Any, user: Any) -> None:
    response = await client.post(
        "/login", json={"email": "ANN@example.com", "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200


async def test_form_login_sets_httponly_cookies_and_redirects(client: Any, user: Any) -> None:
    response = await client.post(
        "/login", form={"email": "ann@example.com", "password": DEFAULT_PASSWORD}, headers=BROWSER
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"
    cookies = response.headers.getlist("Set-Cookie")
    access = next(c for c in cookies if c.startswith("jwt_token="))
    assert "HttpOnly" in access and "SameSite=Lax" in access and "Path=/" in access
    assert "Secure" not in access  # plain http, COOKIE_SECURE=auto
    assert any(c.startswith("refresh_token=") for c in cookies)
    page = await client.get("/dashboard", headers=BROWSER)
    assert page.status_code == 200
    assert "Welcome Ann! You are logged in." in await page.get_data(as_text=True)


async def test_cookie_is_secure_over_https(client: Any, user: Any) -> None:
    response = await client.post(
        "/login",
        form={"email": "ann@example.com", "password": DEFAULT_PASSWORD},
        headers=BROWSER,
        scheme="https",
    )
    assert all("Secure" in c for c in response.headers.getlist("Set-Cookie"))


async def test_unknown_email_and_wrong_password_look_the_same(client: Any, user: Any) -> None:
    unknown = await client.post(
        "/login", json={"email": "bob@example.com", "password": "whatever1"}
    )
    wrong = await client.post("/login", json={"email": "ann@example.com", "password": "whatever1"})
    assert unknown.status_code == wrong.status_code == 401
    assert (
        await unknown.get_json()
        == await wrong.get_json()
        == {"message": "Invalid email or password"}
    )


async def test_wrong_password_rerenders_login_for_browsers(client: Any, user: Any) -> None:
    response = await client.post(
        "/login", form={"email": "ann@example.com", "password": "not it at all"}, headers=BROWSER
    )
    assert response.status_code == 401
    assert "Invalid email or password" in await response.get_data(as_text=True)


async def test_dashboard_with_bearer(client: Any, signed_in: Any) -> None:
    response = await client.get("/dashboard", headers=bearer(signed_in.tokens.access_token))
    assert response.status_code == 200
    assert await response.get_json() == {"message": "Welcome Ann! You are logged in."}


async def test_dashboard_with_cookie(client: Any, signed_in: Any) -> None:
    client.set_cookie("localhost", "jwt_token", signed_in.tokens.access_token)
    response = await client.get("/dashboard")
    assert await response.get_json() == {"message": "Welcome Ann! You are logged in."}


async def test_dashboard_without_token(client: Any) -> None:
    response = await client.get("/dashboard")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert await response.get_json() == {"message": "Token is missing!"}


async def test_dashboard_with_garbage_token(client: Any) -> None:
    for header in ("Bearer not-a-jwt", "Bearer ", "Basic abc"):
        response = await client.get("/dashboard", headers={"Authorization": header})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert await response.get_json() == {"message": "Token is invalid!"}


async def test_browser_without_token_is_redirected_to_login(client: Any) -> None:
    response = await client.get("/dashboard", headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"


async def test_deleted_users_token_is_invalid(app: Quart, client: Any, signed_in: Any) -> None:
    from sqlalchemy import delete

    from quart_auth_app.models import User

    async with db_session(app) as db:
        await db.execute(delete(User).where(User.id == signed_in.user.id))
        await db.commit()
    response = await client.get("/dashboard", headers=bearer(signed_in.tokens.access_token))
    assert response.status_code == 401
    assert await response.get_json() == {"message": "Token is invalid!"}


async def test_name_with_html_is_escaped_on_the_dashboard(app: Quart, client: Any) -> None:
    user = await make_user(app, name="<script>alert(1)</script>")
    from quart_auth_app.testing import cookie_client

    browser = await cookie_client(app, user)
    page = await browser.get("/dashboard", headers=BROWSER)
    html = await page.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "Welcome &lt;script&gt;alert(1)&lt;/script&gt;! You are logged in." in html


async def test_next_after_login_stays_local(client: Any, user: Any) -> None:
    form = {"email": "ann@example.com", "password": DEFAULT_PASSWORD}
    local = await client.post("/login?next=/me/sessions", form=form, headers=BROWSER)
    assert local.headers["Location"] == "/me/sessions"
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = await client.post("/login", form={**form, "next": evil}, headers=BROWSER)
        assert response.headers["Location"] == "/dashboard"
