"""Fixtures: a fresh app and database per test, on SQLite always and PostgreSQL when configured."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Settings the tests do not name come from the environment: keep them away from ./instance.
os.environ.setdefault("INSTANCE_PATH", tempfile.mkdtemp(prefix="qaa-tests-"))
os.environ.setdefault("SECRET_KEY", "test-secret-key-that-is-long-enough-0123456789")

from quart import Quart
from quart.typing import TestClientProtocol
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from quart_auth_app import create_app
from quart_auth_app.migrate import HEAD_REVISION
from quart_auth_app.models import Base
from quart_auth_app.services import Services, open_services
from quart_auth_app.testing import DEFAULT_PASSWORD, SignedIn, make_user, sign_in

# Fixtures of every test: the real SMTP server of the mail tests (inbox, smtp_server), and
# the throw-away Redis of the fault tests (redis_server).
pytest_plugins = ["tests.mail_server", "tests.stores"]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")

# Cheapest argon2id parameters: tests exercise behaviour, not hash strength.
FAST_HASHING = {"ARGON2_MEMORY_COST": "8192", "ARGON2_TIME_COST": "1"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}

# "sqlite-plain" is SQLite without speed/'s accelerations: the core must pass every test alone.
BACKENDS = ["sqlite", "sqlite-plain"] + (["postgresql"] if TEST_DATABASE_URL else [])
# For tests of SQLite-only machinery (the batched reader, its write lock).
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def pytest_report_header() -> list[str]:
    return [
        f"backends: {', '.join(BACKENDS)}"
        + ("" if TEST_DATABASE_URL else " (set TEST_DATABASE_URL for PostgreSQL)"),
        f"redis: {TEST_REDIS_URL or 'not configured (set TEST_REDIS_URL)'}",
    ]


async def reset_postgres(url: str) -> None:
    """Drop and recreate every table so each test starts from an empty database.

    create_all is quicker than the migrations (tests/unit/test_migrations.py checks that both
    build the same schema); the revision is stamped as `db upgrade` would, since the app
    refuses to start on a PostgreSQL schema it does not find migrated.
    """
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(
            text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        )
        await conn.execute(
            text("INSERT INTO alembic_version VALUES (:revision)"), {"revision": HEAD_REVISION}
        )
    await engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which backend the test runs on: sqlite, sqlite-plain (no accelerations) or postgresql."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> str:
    if backend == "postgresql":
        assert TEST_DATABASE_URL is not None
        return TEST_DATABASE_URL
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def accelerations(backend: str) -> bool:
    """False on the sqlite-plain backend."""
    return backend != "sqlite-plain"


@pytest.fixture
def app_config(database_url: str, accelerations: bool, tmp_path: Path) -> dict[str, Any]:
    """Settings for the app under test; tests override entries before `app` is built."""
    return {
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(tmp_path),
        "ACCELERATIONS": str(accelerations).lower(),
        **FAST_HASHING,
    }


@contextlib.asynccontextmanager
async def running_app(
    config: dict[str, Any], prepare: Callable[[Quart], None] | None = None
) -> AsyncIterator[Quart]:
    """An app on a fresh database, started (before_serving hooks run) for the block.

    `prepare` adds what a test needs (routes of its own) before the app starts."""
    if config["DATABASE_URL"].startswith("postgresql"):
        await reset_postgres(config["DATABASE_URL"])
    application = create_app(config)
    if prepare is not None:
        prepare(application)
    async with application.test_app():
        yield application


@pytest.fixture
async def app(app_config: dict[str, Any]) -> AsyncIterator[Quart]:
    async with running_app(app_config) as application:
        yield application


@pytest.fixture
def client(app: Quart) -> TestClientProtocol:
    return app.test_client()


@pytest.fixture
async def user(app: Quart) -> Any:
    return await make_user(app, name="Ann", email="ann@example.com")


@pytest.fixture
async def signed_in(app: Quart, user: Any) -> SignedIn:
    return SignedIn(user, await sign_in(app, user), DEFAULT_PASSWORD)


@contextlib.asynccontextmanager
async def services_on(app: Quart, database_url: str) -> AsyncIterator[Services]:
    """The app's services rebuilt on another database for the block (e.g. one that is down)."""
    original: Services = app.extensions["services"]
    settings = dataclasses.replace(original.settings, database_url=database_url)
    swapped = open_services(settings, original.tokens.keys)
    app.extensions["services"] = swapped
    try:
        yield swapped
    finally:
        app.extensions["services"] = original
        await swapped.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def without_root_privilege() -> list[str]:
    """A command prefix under which a folder without write permission is read-only.

    Root ignores file permissions (CAP_DAC_OVERRIDE): as root, the command runs without that
    capability, as a deployment's service user would. Skips the test when that is not possible.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a folder read-only")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database beside TEST_DATABASE_URL's, dropped after the test.

    Its name derives from TEST_DATABASE_URL's, so test runs on other databases never meet it.
    """
    if not TEST_DATABASE_URL:
        pytest.skip("set TEST_DATABASE_URL for PostgreSQL")
    url = make_url(TEST_DATABASE_URL)
    name = f"{url.database}_empty_{os.getpid()}"
    admin = url.set(database="postgres")
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    asyncio.run(_postgres_admin(admin.render_as_string(False), drop, f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_postgres_admin(admin.render_as_string(False), drop))


async def _postgres_admin(url: str, *statements: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()
