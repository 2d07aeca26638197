"""/docs in a real Chromium with the internet cut off: Swagger UI renders from this origin alone."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .conftest import shot

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Collected in the page before any of its scripts run; evaluated through DevTools, so the CSP
# under test does not apply to the collector itself.
COLLECT_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def test_swagger_ui_renders_with_every_outside_request_blocked(context: Any) -> None:
    page = context.new_page()
    outside: list[str] = []
    failed: list[str] = []
    console: list[str] = []

    def only_loopback(route: Any) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.add_init_script(COLLECT_CSP_VIOLATIONS)
    page.on("requestfailed", lambda request: failed.append(f"failed {request.url}"))
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: console.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: console.append(f"page error: {error}"))

    assert page.goto("/docs").status == 200
    login = page.locator(".opblock-post", has=page.locator('[data-path="/login"]'))
    login.wait_for(state="visible")
    assert page.locator(".opblock").count() >= 19  # every documented operation, not just one
    assert page.get_by_role("heading", name="quart_auth_app").is_visible()

    login.locator(".opblock-summary").click()  # the UI works, not only its first paint
    login.get_by_role("button", name="Try it out").wait_for(state="visible")
    assert login.locator(".opblock-description-wrapper, .opblock-section").first.is_visible()
    shot(page, "docs")

    assert page.evaluate("window.__cspViolations") == []
    assert outside == []  # nothing even tried to leave the machine
    assert failed == []
    assert not [text for text in console if "Content Security Policy" in text], console
    assert console == []
