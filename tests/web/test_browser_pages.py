"""The browser pages through the test client: account forms, flashes, friendly error pages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from quart import Quart

from quart_auth_app.testing import DEFAULT_PASSWORD, cookie_client, make_user, sign_in
from quart_auth_app.web.auth import ACCESS_COOKIE
from quart_auth_app.web.errors import retry_hint
from quart_auth_app.web.views.account_page import device_label

from ..conftest import BROWSER, bearer

NEW_PASSWORD = "a brand new passphrase"
FORM_POST = {**BROWSER, "Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}


async def browser_for(app: Quart, user: Any) -> Any:
    return await cookie_client(app, user)


async def page_text(response: Any) -> str:
    return str(await response.get_data(as_text=True))


async def follow(client: Any, response: Any) -> str:
    """The page a browser shows after a redirect (flash messages included)."""
    assert response.status_code == 302, await page_text(response)
    return await page_text(await client.get(response.headers["Location"], headers=BROWSER))


# The account page ------------------------------------------------------------------------


async def test_account_page_needs_login_and_remembers_where_to_go(client: Any) -> None:
    response = await client.get("/account", headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Faccount"
    login = await page_text(await client.get(response.headers["Location"], headers=BROWSER))
    assert 'name="next" value="/account"' in login


async def test_login_with_next_lands_on_the_account_page(client: Any, user: Any) -> None:
    form = {"email": "ann@example.com", "password": DEFAULT_PASSWORD, "next": "/account"}
    response = await client.post("/login", form=form, headers=FORM_POST)
    assert response.headers["Location"] == "/account"
    assert "Your account" in await follow(client, response)


async def test_account_page_shows_the_person_and_their_devices(app: Quart, user: Any) -> None:
    await sign_in(app, user, user_agent="Mozilla/5.0 (iPhone) AppleWebKit Safari/604.1")
    browser = await browser_for(app, user)
    page = await page_text(await browser.get("/account", headers=BROWSER))
    assert "Signed in as <strong>Ann</strong>" in page
    assert 'value="Ann"' in page and "ann@example.com" in page
    assert "Safari on iPhone" in page
    assert page.count("/revoke") == 1  # only the other device gets a "Sign out" button
    assert "this device" in page
    for autocomplete in ("name", "current-password", "new-password"):
        assert f'autocomplete="{autocomplete}"' in page
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "duplicate ids break <label for=...>"


async def test_rename_redirects_with_a_message_and_escapes_html(app: Quart, user: Any) -> None:
    browser = await browser_for(app, user)
    form = {"name": "<i>Annie</i>"}
    response = await browser.post("/account/name", form=form, headers=FORM_POST)
    page = await follow(browser, response)
    assert "Your name is now &lt;i&gt;Annie&lt;/i&gt;." in page
    assert "<i>Annie</i>" not in page
    me = await browser.get("/me")
    assert (await me.get_json())["name"] == "<i>Annie</i>"


async def test_invalid_name_is_shown_next_to_the_field(app: Quart, user: Any) -> None:
    browser = await browser_for(app, user)
    response = await browser.post("/account/name", form={"name": "   "}, headers=FORM_POST)
    assert response.status_code == 400
    page = await page_text(response)
    assert 'id="name-error"' in page and 'aria-invalid="true"' in page
    assert "Your account" in page  # the whole page again, not a bare error


async def test_change_password_keeps_this_device_and_signs_out_others(
    app: Quart, client: Any, user: Any
) -> None:
    other = await sign_in(app, user)
    browser = await browser_for(app, user)
    form = {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
    response = await browser.post("/account/password", form=form, headers=FORM_POST)
    assert "Password changed." in await follow(browser, response)
    assert (await browser.get("/me")).status_code == 200
    assert (await client.get("/me", headers=bearer(other.access_token))).status_code == 401
    login = {"email": "ann@example.com", "password": NEW_PASSWORD}
    assert (await client.post("/login", json=login)).status_code == 200


async def test_wrong_current_password_stays_on_the_page(app: Quart, user: Any) -> None:
    browser = await browser_for(app, user)
    form = {"current_password": "not my password", "new_password": NEW_PASSWORD}
    response = await browser.post("/account/password", form=form, headers=FORM_POST)
    assert response.status_code == 400
    page = await page_text(response)
    assert 'id="current_password-error"' in page
    assert "not my password" not in page and NEW_PASSWORD not in page
    assert (await browser.get("/me")).status_code == 200  # still signed in


async def test_sign_out_another_device(app: Quart, client: Any, user: Any) -> None:
    other = await sign_in(app, user)
    browser = await browser_for(app, user)
    path = f"/account/sessions/{other.session_id}/revoke"
    response = await browser.post(path, headers=FORM_POST)
    assert "That device has been signed out." in await follow(browser, response)
    assert (await client.get("/me", headers=bearer(other.access_token))).status_code == 401
    again = await browser.post(path, headers=FORM_POST)
    assert again.status_code == 404
    assert "already ended" in await page_text(again)


async def test_signing_out_this_device_goes_to_login(app: Quart, user: Any) -> None:
    browser = await browser_for(app, user)
    me = await browser.get("/me/sessions")
    current = next(s["id"] for s in (await me.get_json())["sessions"] if s["current"])
    response = await browser.post(f"/account/sessions/{current}/revoke", headers=FORM_POST)
    assert response.headers["Location"] == "/login"
    assert ACCESS_COOKIE in response.headers.get("Set-Cookie", "")
    assert "signed out on this device" in await follow(browser, response)


async def test_someone_elses_session_cannot_be_revoked(app: Quart, user: Any) -> None:
    bob = await make_user(app, name="Bob")
    bobs = await sign_in(app, bob)
    browser = await browser_for(app, user)
    response = await browser.post(f"/account/sessions/{bobs.session_id}/revoke", headers=FORM_POST)
    assert response.status_code == 404


async def test_delete_account_needs_the_password(app: Quart, client: Any, user: Any) -> None:
    browser = await browser_for(app, user)
    wrong = await browser.post("/account/delete", form={"password": "nope nope"}, headers=FORM_POST)
    assert wrong.status_code == 400
    assert 'id="password-error"' in await page_text(wrong)
    response = await browser.post(
        "/account/delete", form={"password": DEFAULT_PASSWORD}, headers=FORM_POST
    )
    assert response.headers["Location"] == "/signup"
    assert "Your account has been deleted." in await follow(browser, response)
    login = {"email": "ann@example.com", "password": DEFAULT_PASSWORD}
    assert (await client.post("/login", json=login)).status_code == 401


async def test_account_forms_refuse_cross_origin_posts(app: Quart, user: Any) -> None:
    browser = await browser_for(app, user)
    for site in ("same-site", "cross-site"):
        headers = {**BROWSER, "Sec-Fetch-Site": site}
        response = await browser.post("/account/name", form={"name": "Mallory"}, headers=headers)
        assert response.status_code == 403
        assert "Request refused" in await page_text(response)
    assert (await (await browser.get("/me")).get_json())["name"] == "Ann"


# Layout, logout, error pages -------------------------------------------------------------


async def test_pages_have_one_layout_with_labels_and_the_stylesheet(client: Any) -> None:
    for path in ("/login", "/signup"):
        page = await page_text(await client.get(path, headers=BROWSER))
        assert '<link rel="stylesheet" href="/static/style.css">' in page
        assert 'name="viewport"' in page
        assert '<label for="email">' in page and 'id="email"' in page
    css = await client.get("/static/style.css")
    assert css.status_code == 200 and "@media" in await page_text(css)


async def test_header_offers_logout_as_a_post_form(app: Quart, user: Any) -> None:
    browser = await browser_for(app, user)
    page = await page_text(await browser.get("/dashboard", headers=BROWSER))
    assert '<form method="post" action="/logout"' in page
    response = await browser.post("/logout", headers=FORM_POST)
    assert response.headers["Location"] == "/login"
    after = await browser.get("/dashboard", headers=BROWSER)
    assert after.status_code == 302 and after.headers["Location"] == "/login"


@pytest.mark.parametrize(
    ("method", "path", "status", "title"),
    [("get", "/no/such/page", 404, "Page not found"), ("get", "/logout", 405, "Not available")],
)
async def test_friendly_error_pages_for_browsers_json_for_apis(
    client: Any, method: str, path: str, status: int, title: str
) -> None:
    page = await getattr(client, method)(path, headers=BROWSER)
    assert page.status_code == status
    assert page.mimetype == "text/html"
    assert title in await page_text(page)
    api = await getattr(client, method)(path)
    assert api.status_code == status and api.mimetype == "application/json"


class TestThrottledPages:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, "AUTH_ATTEMPTS_PER_MINUTE": "2"}

    async def test_429_page_says_when_to_try_again(self, client: Any) -> None:
        form = {"email": "x@example.com", "password": "whatever it is"}
        for _ in range(2):
            await client.post("/login", form=form, headers=FORM_POST)
        page = await client.post("/login", form=form, headers=FORM_POST)
        assert page.status_code == 429
        seconds = int(page.headers["Retry-After"])
        text = await page_text(page)
        assert "Too many attempts" in text and retry_hint(seconds) in text
        api = await client.post("/login", json=form)
        assert api.status_code == 429
        assert (await api.get_json())["message"] == "Too many attempts. Please try again later."


def test_retry_hint_reads_like_a_person_wrote_it() -> None:
    assert retry_hint(1) == "Please try again in 1 second."
    assert retry_hint(45) == "Please try again in 45 seconds."
    assert retry_hint(61) == "Please try again in 2 minutes."
    assert retry_hint(900) == "Please try again in 15 minutes."


def test_device_labels() -> None:
    chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
    assert device_label(chrome) == "Chrome on Linux"
    assert device_label("Mozilla/5.0 (Windows NT 10.0; rv:128.0) Firefox/128.0") == (
        "Firefox on Windows"
    )
    assert device_label("curl/8.5.0") == "curl"
    assert device_label(None) == "Unknown device"


async def test_dashboard_offers_the_verification_link_until_verified(app: Quart) -> None:
    unverified = await make_user(app, name="Una")
    page = await page_text(
        await (await browser_for(app, unverified)).get("/dashboard", headers=BROWSER)
    )
    assert 'action="/verify/request"' in page and "not verified yet" in page
    verified = await make_user(app, name="Vera", verified=True)
    page = await page_text(
        await (await browser_for(app, verified)).get("/dashboard", headers=BROWSER)
    )
    assert 'action="/verify/request"' not in page and ">verified<" in page


async def test_resending_the_verification_link_from_the_dashboard(app: Quart, user: Any) -> None:
    browser = await browser_for(app, user)
    response = await browser.post("/verify/request", headers=FORM_POST)
    assert response.headers["Location"] == "/dashboard"
    page = await follow(browser, response)
    assert 'class="notice success"' in page
