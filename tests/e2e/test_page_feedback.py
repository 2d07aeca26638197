"""In a real Chromium: where the focus lands, what a person is told after logout, signup and errors.

The server has no MAIL_URL, as a development server usually has not: the pages must say that a
link went to the server log, not that it was mailed.
"""

from __future__ import annotations

from typing import Any

from .conftest import Person, log_in, path_of, shot, sign_up

ACTIVE = "document.activeElement"


def active_id(page: Any) -> str:
    """The id of the element that has the keyboard focus ("" for <body>)."""
    return str(page.evaluate(f"{ACTIVE}.id"))


def active_is_the_alert(page: Any) -> bool:
    return bool(page.evaluate(f"{ACTIVE}.getAttribute('role') === 'alert'"))


def test_form_pages_focus_their_first_field_on_load(page: Any) -> None:
    for path, field in (("/login", "email"), ("/signup", "name"), ("/password/forgot", "email")):
        page.goto(path)
        assert active_id(page) == field, path
    page.keyboard.type("typed@example.com")  # typing goes straight into the field
    assert page.get_by_label("Email").input_value() == "typed@example.com"


def test_a_failed_signup_focuses_the_first_invalid_field(page: Any) -> None:
    page.goto("/signup")
    page.get_by_label("Name", exact=True).fill("Ann Example")
    page.get_by_label("Email").fill("not an email")
    page.get_by_label("Password").fill("short")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign up").click()
    assert active_id(page) == "email"
    assert page.get_by_role("alert").inner_text() == (
        "Please check the 2 fields below: the email address and the password."
    )
    assert (
        page.locator("#password-error")
        .inner_text()
        .endswith("Password must be at least 8 characters.")
    )
    shot(page, "signup-error-focus")


def test_signup_fills_in_the_email_and_logout_says_signed_out(page: Any, person: Person) -> None:
    sign_up(page, person)
    assert path_of(page) == "/login"
    assert page.get_by_label("Email").input_value() == person.email
    assert active_id(page) == "password"
    assert page.get_by_role("status").inner_text() == "Account created, please log in."
    shot(page, "login-prefilled")

    page.keyboard.type(person.password)  # the focus is where the person types next
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert path_of(page) == "/dashboard"
    hint = page.locator(".verify-again .hint").inner_text()
    assert "written to the server log instead of being mailed" in hint
    assert "MAIL_URL is unset" in hint
    shot(page, "dashboard-mail-log")

    with page.expect_navigation():
        page.get_by_role("button", name="Write a new link to the log").click()
    assert "written to the server log" in page.get_by_role("status").inner_text()

    with page.expect_navigation():
        page.locator("header").get_by_role("button", name="Log out").click()
    assert path_of(page) == "/login"
    assert page.get_by_role("status").inner_text() == "You have been signed out."
    assert page.get_by_label("Email").input_value() == ""  # nothing left for the next person
    assert active_id(page) == "email"
    shot(page, "signed-out")


def test_a_wrong_password_focuses_the_message(page: Any, person: Person) -> None:
    sign_up(page, person)
    response = log_in(page, person, password="not the right one")
    assert response.status == 401
    assert active_is_the_alert(page)
    assert page.evaluate(f"{ACTIVE}.textContent") == "Invalid email or password"
    shot(page, "login-error-focus")
    page.keyboard.press("Tab")  # from the message, Tab goes on into the form
    assert active_id(page) == "email"


def test_sign_out_everywhere_says_so(page: Any, person: Person) -> None:
    sign_up(page, person)
    log_in(page, person)
    page.goto("/account")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out everywhere").click()
    assert page.get_by_role("status").inner_text() == "You have been signed out on every device."


def test_forgot_password_says_where_the_link_went(page: Any, person: Person) -> None:
    sign_up(page, person)
    page.goto("/password/forgot")
    assert "written to the server log" in page.locator(".lead").inner_text()
    page.keyboard.type(person.email)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    notice = page.get_by_role("status").inner_text()
    assert notice.startswith("If an account exists for that address, a link")
    assert "server log" in notice
    shot(page, "forgot-mail-log")
