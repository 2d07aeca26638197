"""The admin page in a real Chromium against a real server: search, deactivate, roles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.servers import Server

from .conftest import Person, log_in, path_of, shot, sign_up

SCRIPT = Path(sys.executable).with_name("quart-auth-app")


def console(server: Server, *argv: str) -> str:
    """Run the console script on the server's database, as an operator would."""
    result = subprocess.run(
        [str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **server.env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_an_admin_deactivates_and_reactivates_a_user_and_edits_roles(
    browser: Any, server: Server, person: Person
) -> None:
    boss = Person("Boss Admin", person.email.replace("ann-", "boss-"))
    other = browser.new_context(base_url=server.url)
    try:
        their_page = other.new_page()
        assert sign_up(their_page, person).status == 200
        assert log_in(their_page, person).status == 200
        assert their_page.locator('a[href="/admin"]').count() == 0  # not an admin: no link

        page = browser.new_context(base_url=server.url).new_page()
        assert sign_up(page, boss).status == 200
        console(server, "roles", "grant", boss.email, "admin")
        log_in(page, boss)
        page.get_by_role("link", name="Admin").click()
        assert path_of(page) == "/admin"

        page.get_by_label("Name or email contains").fill(person.email.upper())
        page.get_by_role("button", name="Search").click()
        rows = page.locator(".admin-user")
        assert rows.count() == 1 and person.email in rows.first.inner_text()
        shot(page, "admin-search")

        page.get_by_role("button", name=f"Deactivate {person.name}").click()
        assert person.email in page.get_by_role("status").inner_text()
        assert "deactivated" in rows.first.inner_text()
        their_page.goto("/dashboard")
        assert path_of(their_page).startswith("/login")  # signed out at once
        assert log_in(their_page, person).status == 403
        assert their_page.get_by_role("alert").inner_text() == "Account disabled"

        page.get_by_role("button", name=f"Reactivate {person.name}").click()
        page.get_by_role("textbox", name=f"Roles of {person.name}").fill("auditor, billing")
        page.get_by_role("button", name=f"Save roles of {person.name}").click()
        assert "now has auditor, billing" in page.get_by_role("status").inner_text()
        assert (
            page.get_by_role("textbox", name=f"Roles of {person.name}").input_value()
            == "auditor, billing"
        )
        assert console(server, "roles", "list", person.email).split() == ["auditor", "billing"]
        assert log_in(their_page, person).status == 200

        page.get_by_role("textbox", name=f"Roles of {person.name}").fill("Not A Role")
        page.get_by_role("button", name=f"Save roles of {person.name}").click()
        assert page.get_by_role("alert").inner_text() == "Please check the roles below."
        assert "is not a valid role name" in page.locator(".field-error").inner_text()
        shot(page, "admin-roles-error")
    finally:
        other.close()


def test_a_cross_site_form_cannot_deactivate_anyone(server: Server, person: Person) -> None:
    response = httpx.post(
        f"{server.url}/admin/users/any/active",
        data={"is_active": "false"},
        headers={"Origin": "https://evil.example", "Accept": "text/html"},
    )
    assert response.status_code == 403
