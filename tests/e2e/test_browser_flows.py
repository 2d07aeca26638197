"""What a person does in a real Chromium, against a real server: signup to account deletion."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Server, running_server

from .conftest import Person, log_in, path_of, server_env, shot, sign_up

TOKEN_COOKIES = ("jwt_token", "refresh_token")


def cookies_by_name(context: Any) -> dict[str, dict[str, Any]]:
    return {cookie["name"]: cookie for cookie in context.cookies()}


def signed_up_and_in(page: Any, who: Person) -> None:
    assert sign_up(page, who).status == 200
    assert log_in(page, who).status == 200
    assert path_of(page) == "/dashboard"


# Signup and login ------------------------------------------------------------------------


def test_signup_then_duplicate_signup_and_field_errors(page: Any, person: Person) -> None:
    response = sign_up(page, person)
    assert path_of(page) == "/login"
    assert response.request.redirected_from.all_headers()["sec-fetch-site"] == "same-origin"
    assert page.get_by_role("status").inner_text() == "Account created, please log in."
    shot(page, "login-after-signup")

    again = sign_up(page, Person("Someone Else", person.email.upper()))
    assert again.status == 400
    assert page.get_by_role("alert").inner_text() == "User already exists. Please login."
    assert page.get_by_label("Email").input_value() == person.email.upper()
    assert page.get_by_label("Password").input_value() == ""
    shot(page, "signup-duplicate")

    page.get_by_label("Email").fill("not an email")
    page.get_by_label("Password").fill("short")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign up").click()
    password = page.get_by_label("Password")
    assert password.get_attribute("aria-invalid") == "true"
    assert "password-error" in (password.get_attribute("aria-describedby") or "")
    assert "at least 8" in page.locator("#password-error").inner_text()
    assert page.locator("#email-error").is_visible()
    shot(page, "signup-invalid")


def test_wrong_password_shows_the_message_on_the_page(page: Any, person: Person) -> None:
    sign_up(page, person)
    response = log_in(page, person, password="not the right one")
    assert response.status == 401
    assert page.get_by_role("alert").inner_text() == "Invalid email or password"
    assert page.get_by_label("Email").input_value() == person.email
    assert page.get_by_label("Password").input_value() == ""
    assert page.get_by_label("Password").get_attribute("autocomplete") == "current-password"
    shot(page, "login-wrong-password")


def test_dashboard_greets_by_name_as_text_with_httponly_cookies(
    page: Any, context: Any, person: Person
) -> None:
    person.name = "Ann <b>Bold</b> <img src=x onerror=alert(1)>"
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    signed_up_and_in(page, person)
    welcome = page.locator(".welcome")
    assert welcome.inner_text() == f"Welcome {person.name}! You are logged in."
    assert welcome.locator("b, img").count() == 0
    assert page.locator("header .who").inner_text() == f"Signed in as {person.name}"
    assert dialogs == []
    shot(page, "dashboard-html-in-name")

    cookies = cookies_by_name(context)
    for name in TOKEN_COOKIES:
        assert cookies[name]["httpOnly"] is True
        assert cookies[name]["sameSite"] == "Lax"
        assert cookies[name]["path"] == "/"
    visible = page.evaluate("document.cookie")
    assert all(name not in visible for name in TOKEN_COOKIES)


def test_after_login_the_person_lands_where_they_were_going(page: Any, person: Person) -> None:
    sign_up(page, person)
    page.goto("/account")
    assert path_of(page) == "/login?next=%2Faccount"
    assert page.get_by_text("Please log in to continue.").is_visible()
    log_in(page, person)
    assert path_of(page) == "/account"
    assert page.get_by_role("heading", name="Your account").is_visible()


def test_next_never_leaves_the_site(page: Any, person: Person) -> None:
    sign_up(page, person)
    page.goto("/login?next=//evil.example/steal")
    log_in(page, person)
    assert path_of(page) == "/dashboard"


def test_logout_sends_the_dashboard_back_to_login(page: Any, context: Any, person: Person) -> None:
    signed_up_and_in(page, person)
    with page.expect_navigation():
        page.locator("header").get_by_role("button", name="Log out").click()
    assert path_of(page) == "/login"
    assert not set(TOKEN_COOKIES) & set(cookies_by_name(context))
    page.goto("/dashboard")
    assert path_of(page) == "/login"
    page.goto("/account")
    assert path_of(page) == "/login?next=%2Faccount"


# The account page ------------------------------------------------------------------------


def test_account_page_actions(browser: Any, server: Server, page: Any, person: Person) -> None:
    signed_up_and_in(page, person)
    shot(page, "dashboard")
    other_device = browser.new_context(
        base_url=server.url, user_agent="Mozilla/5.0 (iPad) Firefox/128.0"
    )
    other = other_device.new_page()
    log_in(other, person)

    page.goto("/account")
    devices = page.locator(".device")
    assert devices.count() == 2
    assert "this device" in devices.first.inner_text()
    assert "Firefox on iPad" in devices.nth(1).inner_text()
    shot(page, "account")

    # Rename, and a name that is only spaces is refused next to the field.
    page.get_by_label("Name", exact=True).fill("Ann Renamed")
    with page.expect_navigation():
        page.get_by_role("button", name="Save name").click()
    assert page.get_by_role("status").inner_text() == "Your name is now Ann Renamed."
    assert page.locator("header .who").inner_text() == "Signed in as Ann Renamed"
    page.get_by_label("Name", exact=True).fill("   ")
    with page.expect_navigation():
        page.get_by_role("button", name="Save name").click()
    assert page.locator("#name-error").is_visible()

    # Sign the other device out; it is sent to the login page.
    with page.expect_navigation():
        page.locator(".device").get_by_role("button", name="Sign out").click()
    assert page.get_by_role("status").inner_text() == "That device has been signed out."
    assert page.locator(".device").count() == 1
    other.goto("/dashboard")
    assert path_of(other) == "/login"

    # Change password: a wrong current one is refused on the page; then it works.
    log_in(other, person)
    page.get_by_label("Current password").fill("not my password")
    page.get_by_label("New password").fill("a completely new passphrase")
    with page.expect_navigation():
        page.get_by_role("button", name="Change password").click()
    assert page.locator("#current_password-error").inner_text().endswith("not correct.")
    page.get_by_label("Current password").fill(person.password)
    page.get_by_label("New password").fill("a completely new passphrase")
    with page.expect_navigation():
        page.get_by_role("button", name="Change password").click()
    assert "Password changed." in page.get_by_role("status").inner_text()
    other.goto("/dashboard")
    assert path_of(other) == "/login"
    other_device.close()
    person.password = "a completely new passphrase"

    # Delete the account: the password is asked for, then the account is gone.
    page.get_by_label("Type your password to confirm").fill("wrong password")
    with page.expect_navigation():
        page.get_by_role("button", name="Delete my account").click()
    assert page.locator("#password-error").is_visible()
    page.get_by_label("Type your password to confirm").fill(person.password)
    with page.expect_navigation():
        page.get_by_role("button", name="Delete my account").click()
    assert path_of(page) == "/signup"
    assert page.get_by_role("status").inner_text() == "Your account has been deleted. Goodbye!"
    assert log_in(page, person).status == 401


def test_phone_sized_screen_has_no_sideways_scrolling(
    browser: Any, server: Server, person: Person
) -> None:
    phone = browser.new_context(
        base_url=server.url, viewport={"width": 360, "height": 740}, is_mobile=True
    )
    page = phone.new_page()
    person.name = "Maximilian Alexander Longname-Smythe"
    signed_up_and_in(page, person)
    for path in ("/dashboard", "/account", "/login", "/signup"):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, path
    page.goto("/account")
    assert page.locator("header").get_by_role("button", name="Log out").is_visible()
    shot(page, "phone-account")
    phone.close()


def test_friendly_error_pages(page: Any) -> None:
    response = page.goto("/no/such/page")
    assert response.status == 404
    assert page.get_by_role("heading", name="Page not found").is_visible()
    shot(page, "error-404")
    response = page.goto("/logout")
    assert response.status == 405
    assert page.get_by_role("heading", name="Not available this way").is_visible()


# Cross-origin refusal and silent renewal -------------------------------------------------


@pytest.fixture
def attacker(server: Server) -> Iterator[str]:
    """A page on another origin (same host, other port) that auto-submits a form to the app."""
    html = (
        f'<form method="post" action="{server.url}/account/name">'
        '<input name="name" value="Mallory"></form>'
        "<script>document.forms[0].submit()</script>"
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_cross_origin_form_post_is_refused(page: Any, person: Person, attacker: str) -> None:
    signed_up_and_in(page, person)
    with page.expect_response(lambda r: r.url.endswith("/account/name")) as posted:
        page.goto(attacker)
    response = posted.value
    assert response.status == 403
    assert response.request.all_headers()["sec-fetch-site"] == "same-site"
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="Request refused").is_visible()
    shot(page, "cross-origin-refused")
    page.goto("/dashboard")
    assert page.locator(".welcome").inner_text() == f"Welcome {person.name}! You are logged in."


@pytest.fixture
def short_lived_server(tmp_path: Path) -> Iterator[Server]:
    with running_server(server_env(tmp_path, JWT_ACCESS_TOKEN_EXPIRES="2")) as running:
        yield running


def test_silent_renewal_after_the_access_cookie_expires(
    browser: Any, short_lived_server: Server, person: Person
) -> None:
    context = browser.new_context(base_url=short_lived_server.url)
    page = context.new_page()
    signed_up_and_in(page, person)
    first = cookies_by_name(context)
    time.sleep(2.5)
    assert "jwt_token" not in cookies_by_name(context)  # the browser dropped the expired cookie
    response = page.goto("/account")
    assert response.status == 200
    assert path_of(page) == "/account"
    renewed = cookies_by_name(context)
    assert renewed["jwt_token"]["httpOnly"] is True
    assert renewed["refresh_token"]["value"] != first["refresh_token"]["value"]  # rotated
    assert page.locator(".device").count() == 1  # renewal kept the same session
    context.close()
