"""Two-factor authentication in a real Chromium: set up from the page, then sign in with a code
and with a recovery code."""

from __future__ import annotations

import time
from typing import Any

import pyotp

from .conftest import Person, log_in, path_of, shot, sign_up


def next_code(totp: pyotp.TOTP, used: set[str]) -> str:
    """A current code not typed before (a code works once): waits out the step if it must."""
    deadline = time.monotonic() + 35
    while time.monotonic() < deadline:
        code = totp.now()
        if code not in used:
            used.add(code)
            return code
        time.sleep(0.5)
    raise AssertionError("no new TOTP code within one step")


def sign_out(page: Any) -> None:
    with page.expect_navigation():
        page.locator("form[action='/logout'] button").first.click()
    assert path_of(page) == "/login"


def test_enroll_then_sign_in_with_a_code_and_with_a_recovery_code(
    page: Any, person: Person
) -> None:
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    assert sign_up(page, person).status == 200
    assert log_in(page, person).status == 200
    page.goto("/account")
    setup = page.locator("form[action='/account/mfa/setup']")
    setup.get_by_label("Password").fill(person.password)
    with page.expect_navigation():
        setup.get_by_role("button").click()
    assert page.locator("figure.qr svg").is_visible()  # drawn inline, allowed by the CSP
    shot(page, "mfa-setup")
    totp = pyotp.TOTP(page.locator("#totp-secret").inner_text().strip())
    used: set[str] = set()
    page.get_by_label("Code from the app").fill(next_code(totp, used))
    with page.expect_navigation():
        page.get_by_role("button", name="Turn on").click()
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    with page.expect_download() as download:
        page.get_by_role("button", name="Download as a text file").click()
    assert download.value.suggested_filename == "recovery-codes.txt"
    assert codes[0] in download.value.path().read_text()
    shot(page, "mfa-codes")

    page.goto("/dashboard")
    sign_out(page)
    log_in(page, person)
    assert page.get_by_role("heading", name="Enter your code").is_visible()
    page.get_by_label("Code", exact=True).fill(next_code(totp, used))
    with page.expect_navigation():
        page.get_by_role("button", name="Verify").click()
    assert path_of(page) == "/dashboard"

    sign_out(page)
    log_in(page, person)
    page.get_by_text("Lost your device? Use a recovery code").click()
    page.get_by_label("Recovery code").fill(codes[3])
    with page.expect_navigation():
        page.get_by_role("button", name="Use recovery code").click()
    assert path_of(page) == "/dashboard"
    page.goto("/account")
    assert "9 recovery codes left" in page.locator("#two-factor").inner_text()
    assert not [e for e in errors if "Content Security Policy" in e]
