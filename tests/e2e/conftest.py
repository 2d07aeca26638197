"""Real Chromium against a real hypercorn server: fixtures for the end-to-end browser tests.

Debian's Chromium drives the pages (never `playwright install`); the tests skip, saying why,
where it is missing. Screenshots land in tests/e2e/screenshots/ (ignored by git).
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import FAST_HASHING, Server, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
PASSWORD = "correct horse battery staple"


def server_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A throwaway database and instance folder, cheap hashing, throttling on as in production."""
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'e2e.db'}",
        "INSTANCE_PATH": str(tmp),
        "SECRET_KEY": secrets.token_urlsafe(48),
        **FAST_HASHING,
        **extra,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(server_env(tmp_path_factory.mktemp("e2e"))) as running:
        yield running


# Module scope: Playwright's own event loop is gone before pytest-asyncio's tests run.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium to run browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Person:
    """Someone with an account (or about to have one) and their own browser profile."""

    name: str
    email: str
    password: str = PASSWORD


@pytest.fixture
def person() -> Person:
    return Person("Ann Example", f"ann-{uuid.uuid4().hex[:8]}@example.com")


@pytest.fixture
def context(browser: Any, server: Server) -> Iterator[Any]:
    ctx = browser.new_context(base_url=server.url, viewport={"width": 1100, "height": 800})
    ctx.set_default_timeout(5000)  # a missing element fails fast instead of after 30 s
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


def shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot of the page under tests/e2e/screenshots/."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def sign_up(page: Any, who: Person) -> Any:
    """Fill and send the signup form the way a person does; returns the navigation response."""
    page.goto("/signup")
    page.get_by_label("Name", exact=True).fill(who.name)
    page.get_by_label("Email").fill(who.email)
    page.get_by_label("Password").fill(who.password)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Sign up").click()
    return navigation.value


def log_in(page: Any, who: Person, password: str | None = None) -> Any:
    """Fill and send the login form on the current page (or /login); returns the response."""
    if not re.search(r"/login(\?|$)", page.url):
        page.goto("/login")
    page.get_by_label("Email").fill(who.email)
    page.get_by_label("Password").fill(password or who.password)
    with page.expect_navigation() as navigation:
        page.locator("main").get_by_role("button", name="Log in").click()
    return navigation.value


def path_of(page: Any) -> str:
    """The path and query of the page's URL."""
    return re.sub(r"^https?://[^/]+", "", page.url)
