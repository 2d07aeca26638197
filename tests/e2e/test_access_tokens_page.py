"""Personal access tokens on the account page, in a real Chromium against a real server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.servers import Server

from .conftest import Person, log_in, path_of, shot, sign_up

CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def get_me(server: Server, token: str) -> tuple[int, Any]:
    """GET /me as a script would, with the token as its bearer."""
    request = urllib.request.Request(  # noqa: S310 - the test server, over http
        f"{server.url}/me", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_token_is_made_copied_used_and_revoked(
    context: Any, page: Any, person: Person, server: Server
) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.add_init_script(CSP_WATCH)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    assert sign_up(page, person).status == 200
    assert log_in(page, person).status == 200
    page.goto("/account")
    tokens = page.locator("#access-tokens")
    assert "You have no access tokens." in tokens.inner_text()
    tokens.get_by_label("Token name").fill("backup script")
    tokens.get_by_label("profile:read").check()
    tokens.get_by_label("Expires").select_option("30")
    with page.expect_navigation():
        tokens.get_by_role("button", name="Make token").click()
    assert path_of(page) == "/account/tokens"
    secret = page.locator("#new-token-value").inner_text()
    assert secret.startswith("qaa_pat_")
    shot(page, "account-new-access-token")
    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    status, me = get_me(server, secret)
    assert (status, me["email"]) == (200, person.email)

    page.goto("/account")
    assert secret not in page.content()  # shown once
    listed = page.locator("#access-tokens .device")
    assert listed.count() == 1
    assert "profile:read" in listed.inner_text()
    with page.expect_navigation():
        listed.get_by_role("button", name="Revoke the token backup script").click()
    assert page.get_by_role("status").inner_text() == "The access token has been revoked."
    assert "You have no access tokens." in page.locator("#access-tokens").inner_text()
    assert get_me(server, secret) == (401, {"message": "Token is invalid!"})
    assert page.evaluate("window.__cspViolations") == []
    assert errors == []
