"""pytest fixtures for apps built on quart_auth_app: `app` and `client` on a throw-away database.

pytest loads this module through the package's `pytest11` entry point, in every run of an
environment the package is installed in; a conftest fixture of the same name wins over these.
Loading it builds nothing and touches no file: quart_auth_app is imported only when a fixture runs.

- `app`: the factory's app on a fresh SQLite database in the test's `tmp_path`, started inside
  `app.test_app()` (start-up hooks have run), with cheap argon2id parameters and a test key;
- `client`: `app.test_client()`;
- `quart_auth_app_config`: settings by variable name that win over the plugin's own (override it);
- `quart_auth_app_factory`: what builds the app, `create_app` unless overridden.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from quart import Quart
    from quart.typing import TestClientProtocol

AppFactory = Callable[[Mapping[str, Any]], "Quart"]

TEST_SECRET_KEY = "quart_auth_app pytest plugin: a key for tests only"  # noqa: S105
# Cheapest argon2id parameters the settings accept: tests exercise behaviour, not hash strength.
FAST_HASHING = {"ARGON2_MEMORY_COST": "8192", "ARGON2_TIME_COST": "1"}
MISSING_PYTEST_ASYNCIO = (
    "the `app` fixture of quart_auth_app needs pytest-asyncio: "
    "pip install 'quart_auth_app[testing]'"
)


def throwaway_config(folder: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Settings for an app under test: nothing read from the environment, every file in `folder`."""
    from quart_auth_app.config import PARSERS

    # An empty value counts as unset, so the developer's REDIS_URL, MAIL_URL, JWT_* … stay out.
    blank = dict.fromkeys(PARSERS, "")
    return {
        **blank,
        "INSTANCE_PATH": str(folder),
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'app.db'}",
        "SECRET_KEY": TEST_SECRET_KEY,
        **FAST_HASHING,
        **overrides,
    }


@pytest.fixture
def quart_auth_app_config() -> dict[str, Any]:
    """Settings by variable name for the app under test; override this fixture to change them."""
    return {}


@pytest.fixture
def quart_auth_app_factory() -> AppFactory:
    """The factory `app` is built with; override it to return your own (config -> app)."""
    from quart_auth_app import create_app

    return create_app


async def _running_app(
    quart_auth_app_factory: AppFactory,
    quart_auth_app_config: Mapping[str, Any],
    tmp_path: Path,
) -> AsyncIterator[Quart]:
    """An app from the factory on a fresh SQLite database in tmp_path, started for the test."""
    folder = tmp_path / "quart_auth_app"
    folder.mkdir()
    application = quart_auth_app_factory(throwaway_config(folder, quart_auth_app_config))
    async with application.test_app():
        yield application


def _needs_pytest_asyncio() -> NoReturn:
    pytest.fail(MISSING_PYTEST_ASYNCIO, pytrace=False)


def _app_fixture() -> Any:
    """`app` as a pytest-asyncio fixture (strict and auto mode), else one saying what is missing."""
    try:
        import pytest_asyncio
    except ImportError:  # installed without the `testing` extra: pytest itself must still run
        return pytest.fixture(name="app")(_needs_pytest_asyncio)
    return pytest_asyncio.fixture(name="app")(_running_app)


app = _app_fixture()


@pytest.fixture
def client(app: Quart) -> TestClientProtocol:
    """A test client of `app`, signed in as nobody."""
    return app.test_client()
