"""What the pages tell a person: where the focus is, errors in sentences, signed-out and mail notices.

Through the test client, on every database backend; tests/e2e/test_page_feedback.py checks the
same in a real Chromium.
"""

from __future__ import annotations

import socket
from html.parser import HTMLParser
from typing import Any

import pytest
from quart import Quart

from quart_auth_app import recovery as mail_flows
from quart_auth_app.testing import (
    DEFAULT_PASSWORD,
    bearer_client,
    cookie_client,
    db_session,
    make_user,
)

from ..conftest import BROWSER, running_app

FORM_POST = {**BROWSER, "Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
BAD_SIGNUP = {"name": " ", "email": "not an email", "password": "short"}
SIGNUP = {"name": "Ann", "email": "ann@example.com", "password": "correct horse battery"}
LOGGED = "written to the server log"
NOT_SET_UP = "mail is not set up on this server (MAIL_URL is unset)"


class Elements(HTMLParser):
    """Every start tag of a page with its attributes, in document order."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def by_id(self, element_id: str) -> dict[str, str | None]:
        return next(attrs for _, attrs in self.tags if attrs.get("id") == element_id)

    def autofocused(self) -> list[tuple[str, dict[str, str | None]]]:
        return [(tag, attrs) for tag, attrs in self.tags if "autofocus" in attrs]


async def page_of(response: Any) -> str:
    return str(await response.get_data(as_text=True))


def focused_id(page: str) -> str | None:
    """The id of the one element the page focuses (a page never asks for two)."""
    focused = Elements(page).autofocused()
    assert len(focused) == 1, focused
    return focused[0][1].get("id")


def focused_message(page: str) -> str:
    """The focused element must be the form's message; returns that message."""
    [(tag, attrs)] = Elements(page).autofocused()
    assert tag == "p" and attrs["role"] == "alert" and attrs["tabindex"] == "-1", attrs
    start = page.index(">", page.index('role="alert"')) + 1
    return page[start : page.index("</p>", start)]


async def follow(client: Any, response: Any) -> str:
    assert response.status_code == 302, await page_of(response)
    return await page_of(await client.get(response.headers["Location"], headers=BROWSER))


def notices(page: str) -> list[str]:
    """The flash messages a page shows (role=status)."""
    found = []
    for part in page.split('role="status">')[1:]:
        found.append(part.split("</p>", 1)[0])
    return found


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# Focus ----------------------------------------------------------------------------------


async def test_each_form_page_focuses_the_field_a_person_starts_with(
    app: Quart, client: Any, user: Any
) -> None:
    for path, field in (("/login", "email"), ("/signup", "name"), ("/password/forgot", "email")):
        assert focused_id(await page_of(await client.get(path, headers=BROWSER))) == field, path
    async with db_session(app) as db:
        token = await mail_flows.issue(db, user, mail_flows.RESET)
    reset = await client.get(f"/password/reset?token={token}", headers=BROWSER)
    assert focused_id(await page_of(reset)) == "new_password"


async def test_reset_and_verify_pages_focus_what_failed(app: Quart, client: Any, user: Any) -> None:
    async with db_session(app) as db:
        token = await mail_flows.issue(db, user, mail_flows.RESET)
    form = {"token": token, "new_password": "password"}
    weak = await client.post("/password/reset", form=form, headers=FORM_POST)
    assert weak.status_code == 400
    page = await page_of(weak)
    assert focused_id(page) == "new_password"
    assert "Please check the new password below." in page
    bad_link = await client.get("/verify?token=not-a-real-token", headers=BROWSER)
    assert bad_link.status_code == 400
    assert focused_message(await page_of(bad_link)) == "Invalid or expired token"


async def test_signup_errors_focus_the_first_invalid_field_and_read_as_sentences(
    client: Any,
) -> None:
    response = await client.post("/signup", form=BAD_SIGNUP, headers=FORM_POST)
    assert response.status_code == 400
    page = await page_of(response)
    assert focused_id(page) == "name"
    elements = Elements(page)
    for field in ("name", "email"):
        assert elements.by_id(field)["aria-invalid"] == "true"
        assert elements.by_id(field)["aria-describedby"] == f"{field}-error"
    assert elements.by_id("password")["aria-describedby"] == "password-hint password-error"
    summary = "Please check the 3 fields below: the name, the email address and the password."
    assert f'role="alert" tabindex="-1">{summary}</p>' in page
    assert '<p class="field-error" id="name-error">Name is required.</p>' in page
    assert "Password must be at least 8 characters." in page
    assert "Invalid input" not in page


async def test_one_wrong_field_is_named_and_focused(client: Any) -> None:
    form = {**SIGNUP, "email": "ann@@example.com"}
    page = await page_of(await client.post("/signup", form=form, headers=FORM_POST))
    assert focused_id(page) == "email"
    assert "Please check the email address below." in page
    assert 'value="Ann"' in page and "correct horse battery" not in page


async def test_the_json_api_keeps_its_message_and_reasons(client: Any) -> None:
    response = await client.post("/signup", json=BAD_SIGNUP)
    assert response.status_code == 400
    body = await response.get_json()
    assert body["message"] == "Invalid input: email, name, password"
    assert body["errors"]["name"] == "Name is required"  # no full stop added for programs


async def test_a_wrong_password_focuses_the_message_not_a_field(client: Any, user: Any) -> None:
    form = {"email": "ann@example.com", "password": "not the right one"}
    response = await client.post("/login", form=form, headers=FORM_POST)
    assert response.status_code == 401
    page = await page_of(response)
    assert focused_message(page) == "Invalid email or password"
    assert 'value="ann@example.com"' in page


async def test_a_missing_password_focuses_the_password_field(client: Any) -> None:
    form = {"email": "ann@example.com", "password": ""}
    page = await page_of(await client.post("/login", form=form, headers=FORM_POST))
    assert focused_id(page) == "password"
    assert "Please check the password below." in page


async def test_the_account_page_focuses_the_field_of_the_form_that_failed(
    app: Quart, user: Any
) -> None:
    browser = await cookie_client(app, user)
    assert (
        Elements(await page_of(await browser.get("/account", headers=BROWSER))).autofocused() == []
    )
    wrong = {"current_password": "not my password", "new_password": "a brand new passphrase"}
    page = await page_of(await browser.post("/account/password", form=wrong, headers=FORM_POST))
    assert focused_id(page) == "current_password"
    assert "Please check the current password below." in page
    assert "That password is not correct." in page
    page = await page_of(await browser.post("/account/name", form={"name": ""}, headers=FORM_POST))
    assert focused_id(page) == "name"
    assert page.count('role="alert"') == 1  # only the failed form shows a message


# Signed out, and the email carried from signup to login --------------------------------


async def test_logout_tells_the_browser_it_signed_out(app: Quart, user: Any) -> None:
    browser = await cookie_client(app, user)
    response = await browser.post("/logout", headers=FORM_POST)
    page = await follow(browser, response)
    assert notices(page) == ["You have been signed out."]
    assert focused_id(page) == "email"


async def test_logout_everywhere_says_so(app: Quart, user: Any) -> None:
    browser = await cookie_client(app, user)
    response = await browser.post("/logout/all", headers=FORM_POST)
    assert notices(await follow(browser, response)) == ["You have been signed out on every device."]


async def test_api_logout_keeps_its_message_and_sets_no_session_cookie(
    app: Quart, user: Any
) -> None:
    for api in (await bearer_client(app, user), await cookie_client(app, user)):
        response = await api.post("/logout")
        assert await response.get_json() == {"message": "Logged out."}
        assert "session=" not in ";".join(response.headers.getlist("Set-Cookie"))


async def test_after_signup_the_login_page_has_the_email_and_focuses_the_password(
    client: Any,
) -> None:
    response = await client.post("/signup", form=SIGNUP, headers=FORM_POST)
    assert response.headers["Location"] == "/login"  # the address is not in the URL
    session_cookie = next(
        c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")
    )
    assert "HttpOnly" in session_cookie
    page = await follow(client, response)
    elements = Elements(page)
    assert elements.by_id("email")["value"] == "ann@example.com"
    assert focused_id(page) == "password"
    assert notices(page) == ["Account created, please log in."]
    again = await page_of(await client.get("/login", headers=BROWSER))
    assert Elements(again).by_id("email")["value"] == ""  # once, not for whoever comes next
    assert focused_id(again) == "email"


async def test_a_json_signup_remembers_nothing(client: Any) -> None:
    response = await client.post("/signup", json=SIGNUP)
    assert response.status_code == 201
    page = await page_of(await client.get("/login", headers=BROWSER))
    assert Elements(page).by_id("email")["value"] == ""


# Where the mail went ---------------------------------------------------------------------


async def forgot_notice(client: Any, email: str) -> str:
    response = await client.post("/password/forgot", form={"email": email}, headers=FORM_POST)
    [notice] = notices(await follow(client, response))
    return notice


async def resend_notice(app: Quart, user: Any) -> str:
    browser = await cookie_client(app, user)
    response = await browser.post("/verify/request", headers=FORM_POST)
    [notice] = notices(await follow(browser, response))
    return notice


async def dashboard_of(app: Quart, user: Any) -> str:
    browser = await cookie_client(app, user)
    return await page_of(await browser.get("/dashboard", headers=BROWSER))


async def test_without_mail_url_every_page_says_the_link_went_to_the_log(
    app: Quart, client: Any, user: Any
) -> None:
    dashboard = await dashboard_of(app, user)
    assert f"{LOGGED} instead of being mailed: {NOT_SET_UP}." in dashboard
    assert "we mailed" not in dashboard and "Write a new link to the log" in dashboard

    forgot_page = await page_of(await client.get("/password/forgot", headers=BROWSER))
    assert f"{LOGGED}: {NOT_SET_UP}." in forgot_page and "we will mail" not in forgot_page
    known = await forgot_notice(client, "ann@example.com")
    assert known == await forgot_notice(client, "nobody@example.com")  # no account is revealed
    assert LOGGED in known and "we have sent" not in known

    assert await resend_notice(app, user) == (
        "Mail is not set up on this server (MAIL_URL is unset), so the new verification link "
        "was written to the server log instead of being mailed."
    )
    verify_page = await page_of(await client.get("/verify", headers=BROWSER))
    assert f"Open the link {LOGGED}: {NOT_SET_UP}." in verify_page
    response = await client.post(
        "/verify/request", form={"email": "x@example.com"}, headers=FORM_POST
    )
    [resent] = notices(await follow(client, response))
    assert LOGGED in resent and "we have sent" not in resent


class TestWithMailSetUp:
    """MAIL_URL points at a closed port: the wording is about the setting, not delivery."""

    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {
            **app_config,
            "MAIL_URL": f"smtp://127.0.0.1:{closed_port()}",
            "MAIL_TIMEOUT": "1",
            "PUBLIC_URL": "http://localhost",
        }

    async def test_pages_say_the_link_was_mailed_and_to_which_address(
        self, app: Quart, client: Any, user: Any
    ) -> None:
        dashboard = await dashboard_of(app, user)
        assert "open the link we mailed to ann@example.com. Nothing arrived?" in dashboard
        assert "server log" not in dashboard and "Send the link again" in dashboard

        forgot_page = await page_of(await client.get("/password/forgot", headers=BROWSER))
        assert "we will mail you a link" in forgot_page and "server log" not in forgot_page
        known = await forgot_notice(client, "ann@example.com")
        assert known == await forgot_notice(client, "nobody@example.com")
        assert known.startswith("If an account exists for that address, we have sent it a link")

        assert await resend_notice(app, user) == (
            "We have sent a new verification link to ann@example.com."
        )
        verify_page = await page_of(await client.get("/verify", headers=BROWSER))
        assert "Open the link we mailed you." in verify_page


async def test_an_unverified_login_says_where_the_link_is(app_config: dict[str, Any]) -> None:
    async with running_app({**app_config, "REQUIRE_VERIFIED_EMAIL": "true"}) as app:
        await make_user(app, email="una@example.com")
        client = app.test_client()
        form = {"email": "una@example.com", "password": DEFAULT_PASSWORD}
        page = await page_of(await client.post("/login", form=form, headers=FORM_POST))
        assert focused_message(page) == (
            "Please verify your email address before logging in: open the link written to the "
            f"server log ({NOT_SET_UP}), or ask for a new one at /verify."
        )
        api = await client.post("/login", json=form)
        assert api.status_code == 403
        assert "/verify/request" in (await api.get_json())["message"]  # the API's words stay
