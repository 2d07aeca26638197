"""Fixtures: a fresh app and database per test, on SQLite always and PostgreSQL when configured."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

# Importing the package builds `app` from the environment: give it a throwaway instance folder.
os.environ.setdefault("INSTANCE_PATH", tempfile.mkdtemp(prefix="qaa-import-"))
os.environ.setdefault("SECRET_KEY", "test-secret-key-that-is-long-enough-0123456789")

from quart import Quart
from quart.typing import TestClientProtocol
from sqlalchemy.ext.asyncio import create_async_engine

from quart_auth_app import create_app
from quart_auth_app.models import Base
from quart_auth_app.testing import DEFAULT_PASSWORD, SignedIn, make_user, sign_in

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")

# Cheapest argon2id parameters: tests exercise behaviour, not hash strength.
FAST_HASHING = {"ARGON2_MEMORY_COST": "8192", "ARGON2_TIME_COST": "1"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}

BACKENDS = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])
# For tests of SQLite-only machinery (the batched reader, its write lock).
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def pytest_report_header() -> list[str]:
    return [
        f"database backends: {', '.join(BACKENDS)}"
        + ("" if TEST_DATABASE_URL else " (set TEST_DATABASE_URL for PostgreSQL)"),
        f"redis: {TEST_REDIS_URL or 'not configured (set TEST_REDIS_URL)'}",
    ]


async def reset_postgres(url: str) -> None:
    """Drop and recreate every table so each test starts from an empty database."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        assert TEST_DATABASE_URL is not None
        return TEST_DATABASE_URL
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def app_config(database_url: str, tmp_path: Path) -> dict[str, Any]:
    """Settings for the app under test; tests override entries before `app` is built."""
    return {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path), **FAST_HASHING}


@contextlib.asynccontextmanager
async def running_app(config: dict[str, Any]) -> AsyncIterator[Quart]:
    """An app on a fresh database, started (before_serving hooks run) for the block."""
    if config["DATABASE_URL"].startswith("postgresql"):
        await reset_postgres(config["DATABASE_URL"])
    application = create_app(config)
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


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
