"""SPEC §7: security headers on every response, cross-origin refusal, no-store, 405 with Allow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from quart_auth_app import create_app
from quart_auth_app.testing import DEFAULT_PASSWORD, SignedIn, cookie_client

from ..conftest import BROWSER, FAST_HASHING, bearer

SIGNUP = {"name": "Eve", "email": "eve@example.com", "password": "correct horse battery"}
LOGIN = {"email": "ann@example.com", "password": DEFAULT_PASSWORD}
JSON = {"Content-Type": "application/json"}


def assert_baseline_headers(response: Any) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] in (
        "no-referrer",
        "strict-origin-when-cross-origin",
        "same-origin",
    )
    assert headers["X-Frame-Options"] == "DENY"
    if response.mimetype == "text/html":
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp


# Headers on every response ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/", {}, 200),
        ("GET", "/login", {"headers": BROWSER}, 200),
        ("GET", "/signup", {"headers": BROWSER}, 200),
        ("GET", "/healthz", {}, 200),
        ("GET", "/static/style.css", {}, 200),
        ("GET", "/dashboard", {}, 401),
        ("GET", "/dashboard", {"headers": BROWSER}, 302),
        ("GET", "/no/such/page", {}, 404),
        ("GET", "/no/such/page", {"headers": BROWSER}, 404),
        ("PUT", "/login", {}, 405),
        ("POST", "/login", {"data": b"{", "headers": JSON}, 400),
        ("POST", "/login", {"json": {"email": "x@example.com", "password": "wrongwrong"}}, 401),
        ("POST", "/login", {"data": b"x" * 70_000, "headers": JSON}, 413),
        ("POST", "/login", {"json": LOGIN, "headers": {"Sec-Fetch-Site": "cross-site"}}, 403),
        (
            "POST",
            "/signup",
            {"form": SIGNUP, "headers": {**BROWSER, "Origin": "http://evil.example"}},
            403,
        ),
    ],
)
async def test_every_response_carries_the_headers(
    client: Any, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = await client.open(path, method=method, **kwargs)
    assert response.status_code == status
    assert_baseline_headers(response)


async def test_html_pages_carry_a_csp_json_needs_none(client: Any) -> None:
    page = await client.get("/login", headers=BROWSER)
    assert page.mimetype == "text/html"
    assert "Content-Security-Policy" in page.headers
    error_page = await client.get("/nowhere", headers=BROWSER)
    assert error_page.mimetype == "text/html"
    assert "frame-ancestors 'none'" in error_page.headers["Content-Security-Policy"]


def own_app(tmp_path: Path) -> Quart:
    """An app of its own on SQLite in tmp_path, for a test that adds a route to it."""
    return create_app(
        {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'own.db'}",
            "INSTANCE_PATH": str(tmp_path),
            **FAST_HASHING,
        }
    )


async def test_unexpected_errors_are_500_json_with_the_headers(tmp_path: Path) -> None:
    application = own_app(tmp_path)

    @application.get("/boom")
    async def boom() -> str:
        raise RuntimeError("a bug, with a secret in its message: hunter2")

    async with application.test_app():
        client = application.test_client()
        response = await client.get("/boom")
        page = await client.get("/boom", headers=BROWSER)
    assert response.status_code == 500
    body = await response.get_json()
    assert body == {"message": "Internal server error"}
    assert_baseline_headers(response)
    assert page.status_code == 500 and "hunter2" not in await page.get_data(as_text=True)
    assert_baseline_headers(page)


async def test_a_header_a_route_sets_itself_is_kept(tmp_path: Path) -> None:
    application = own_app(tmp_path)

    @application.get("/embeddable")
    async def embeddable() -> tuple[str, dict[str, str]]:
        own = {"x-frame-options": "SAMEORIGIN", "Content-Security-Policy": "frame-ancestors 'self'"}
        return "<p>widget</p>", {**own, "Content-Type": "text/html"}

    async with application.test_app():
        response = await application.test_client().get("/embeddable")
    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers.getlist("Content-Security-Policy") == ["frame-ancestors 'self'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# Cache-Control: no-store on token and account responses ------------------------------------


async def test_token_and_account_responses_are_no_store(
    app: Quart, client: Any, signed_in: SignedIn
) -> None:
    auth = bearer(signed_in.tokens.access_token)
    login = await client.post("/login", json=LOGIN)
    assert login.status_code == 200
    tokens = await login.get_json()
    responses = [
        login,
        await client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]}),
        await client.get("/me", headers=auth),
        await client.patch("/me", json={"name": "Ann B"}, headers=auth),
        await client.get("/me/sessions", headers=auth),
        await client.get("/dashboard", headers=auth),
        await client.post("/login", json={**LOGIN, "password": "wrong password"}),
        await client.post("/signup", json=SIGNUP),
        await client.post("/logout", headers=bearer(tokens["access_token"])),
    ]
    for response in responses:
        assert response.headers["Cache-Control"] == "no-store", response.status_code
    browser = await cookie_client(app, signed_in.user)
    assert (await browser.get("/account", headers=BROWSER)).headers["Cache-Control"] == "no-store"


async def test_public_pages_may_be_cached(client: Any) -> None:
    response = await client.get("/static/style.css")
    assert response.headers.get("Cache-Control") != "no-store"


# 405 with Allow, in JSON ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/login", {"GET", "POST"}),
        ("DELETE", "/signup", {"GET", "POST"}),
        ("GET", "/me/password", {"POST"}),
        ("POST", "/healthz", {"GET"}),
        ("PATCH", "/dashboard", {"GET"}),
        ("PUT", "/me", {"GET", "PATCH", "DELETE"}),
        ("GET", "/token/refresh", {"POST"}),
    ],
)
async def test_wrong_methods_are_405_with_allow(
    client: Any, method: str, path: str, allowed: set[str]
) -> None:
    response = await client.open(path, method=method)
    assert response.status_code == 405
    assert await response.get_json() == {"message": "Method not allowed"}
    listed = {part.strip() for part in response.headers["Allow"].split(",")}
    assert allowed <= listed
    assert method not in listed
    assert_baseline_headers(response)


# Cross-origin refusal ----------------------------------------------------------------------


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site", "CROSS-SITE"])
@pytest.mark.parametrize("path", ["/login", "/signup"])
@pytest.mark.parametrize("as_form", [True, False])
async def test_other_sites_cannot_post_login_or_signup(
    client: Any, user: Any, fetch_site: str, path: str, as_form: bool
) -> None:
    body = LOGIN if path == "/login" else SIGNUP
    headers = {"Sec-Fetch-Site": fetch_site, **(BROWSER if as_form else {})}
    payload = {"form": body} if as_form else {"json": body}
    response = await client.post(path, headers=headers, **payload)
    assert response.status_code == 403
    assert "Set-Cookie" not in response.headers
    if not as_form:
        assert (await response.get_json())["message"]


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "https://localhost.evil.example", "null", "http://localhost:8080"],
)
async def test_a_foreign_origin_is_refused(client: Any, user: Any, origin: str) -> None:
    for path, body in (("/login", LOGIN), ("/signup", SIGNUP)):
        response = await client.post(path, json=body, headers={"Origin": origin})
        assert response.status_code == 403, (path, origin)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": "http://localhost"},
        {"Origin": "http://LOCALHOST"},
        # Sec-Fetch-Site decides when both are present (browsers that send it are truthful).
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
    ],
)
async def test_same_origin_and_api_clients_pass(
    client: Any, user: Any, headers: dict[str, str]
) -> None:
    assert (await client.post("/login", json=LOGIN, headers=headers)).status_code == 200
    assert (await client.post("/signup", json=SIGNUP, headers=headers)).status_code == 201


async def test_same_origin_browser_form_login_works(client: Any, user: Any) -> None:
    headers = {**BROWSER, "Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
    response = await client.post("/login", form=LOGIN, headers=headers)
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"


async def test_safe_methods_from_other_sites_pass(client: Any) -> None:
    headers = {**BROWSER, "Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}
    assert (await client.get("/login", headers=headers)).status_code == 200


async def test_cross_site_cannot_delete_an_account_with_its_cookie(app: Quart, user: Any) -> None:
    browser = await cookie_client(app, user)
    attack = {"Sec-Fetch-Site": "cross-site"}
    response = await browser.delete("/me", json={"password": DEFAULT_PASSWORD}, headers=attack)
    assert response.status_code == 403
    changed = await browser.post(
        "/me/password",
        form={"current_password": DEFAULT_PASSWORD, "new_password": "attacker chosen phrase"},
        headers={"Origin": "http://evil.example"},
    )
    assert changed.status_code == 403
    assert (await browser.get("/me")).status_code == 200


async def test_refused_browsers_see_an_error_page(client: Any) -> None:
    headers = {**BROWSER, "Sec-Fetch-Site": "cross-site"}
    response = await client.post("/signup", form=SIGNUP, headers=headers)
    assert response.status_code == 403
    assert response.mimetype == "text/html"
    assert "Cross-origin request refused" in await response.get_data(as_text=True)
