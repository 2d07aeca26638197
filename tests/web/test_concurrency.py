"""Integrity under concurrency, and a login burst that leaves other requests fast.

Real parallel requests go to a real hypercorn server (temporary SQLite file, two workers) with
httpx.AsyncClient; the same races also run in-process through the test client on every backend.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart
from sqlalchemy import func, select

from quart_auth_app.models import User
from quart_auth_app.testing import db_session

from ..servers import FAST_HASHING, Server, running_server

DUPLICATE = "User already exists. Please login."
PASSWORD = "correct horse battery"
SECRET = "concurrency-tests-secret-key-0123456789abcdef"


def signup_body(email: str, name: str = "Racer") -> dict[str, str]:
    return {"name": name, "email": email, "password": PASSWORD}


def server_env(folder: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'app.db'}",
        "INSTANCE_PATH": str(folder),
        "SECRET_KEY": SECRET,
        # These tests measure integrity, not throttling: one address sends every request.
        "RATE_LIMIT_ENABLED": "false",
        **extra,
    }


def count_rows(database: Path, email: str | None = None) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        if email is None:
            row = connection.execute("SELECT count(*) FROM users").fetchone()
        else:
            query = "SELECT count(*) FROM users WHERE lower(email) = lower(?)"
            row = connection.execute(query, (email,)).fetchone()
    return int(row[0])


def http_client(server: Server, timeout: float = 60) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    return httpx.AsyncClient(base_url=server.url, timeout=timeout, limits=limits)


# A real server, two workers, SQLite ----------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("concurrency-server")
    with running_server({**server_env(folder), **FAST_HASHING}, workers=2) as server:
        yield server


def database_of(server: Server) -> Path:
    return Path(server.env["INSTANCE_PATH"]) / "app.db"


async def test_simultaneous_signups_with_one_email_make_one_account(sqlite_server: Server) -> None:
    email = "same.person@example.com"
    spellings = [email, email.upper(), "Same.Person@EXAMPLE.com"]
    async with http_client(sqlite_server) as http:
        responses = await asyncio.gather(
            *(http.post("/signup", json=signup_body(spellings[i % 3])) for i in range(20))
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [400] * 19
    refused = [r.json() for r in responses if r.status_code == 400]
    assert all(body == {"message": DUPLICATE} for body in refused)
    assert await asyncio.to_thread(count_rows, database_of(sqlite_server), email) == 1


async def test_forty_simultaneous_distinct_signups_all_succeed(sqlite_server: Server) -> None:
    emails = [f"racer{i}@example.com" for i in range(40)]
    async with http_client(sqlite_server) as http:
        responses = await asyncio.gather(
            *(http.post("/signup", json=signup_body(email)) for email in emails)
        )
        assert [r.status_code for r in responses] == [201] * 40, [r.text for r in responses]
        # And every one of them can log in, all at once.
        logins = await asyncio.gather(
            *(http.post("/login", json={"email": e, "password": PASSWORD}) for e in emails)
        )
    assert [r.status_code for r in logins] == [200] * 40
    assert len({r.json()["public_id"] for r in responses}) == 40
    database = database_of(sqlite_server)
    for email in emails[:3]:
        assert await asyncio.to_thread(count_rows, database, email) == 1
    log = sqlite_server.log()
    assert "database is locked" not in log
    assert "Traceback" not in log


async def test_simultaneous_account_changes_keep_the_row_consistent(sqlite_server: Server) -> None:
    email = "busy.account@example.com"
    async with http_client(sqlite_server) as http:
        assert (await http.post("/signup", json=signup_body(email))).status_code == 201
        login = await http.post("/login", json={"email": email, "password": PASSWORD})
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        renames = await asyncio.gather(
            *(http.patch("/me", json={"name": f"Name {i}"}, headers=auth) for i in range(20))
        )
        assert [r.status_code for r in renames] == [200] * 20
        final = (await http.get("/me", headers=auth)).json()["name"]
        assert final in {f"Name {i}" for i in range(20)}
        deletes = await asyncio.gather(
            *(
                http.request("DELETE", "/me", json={"password": PASSWORD}, headers=auth)
                for _ in range(5)
            )
        )
    statuses = sorted(r.status_code for r in deletes)
    # One delete wins; the others find the token already dead or the row already gone.
    assert statuses[0] == 204
    assert all(status in (204, 401) for status in statuses), statuses
    assert all(status < 500 for status in statuses)
    assert await asyncio.to_thread(count_rows, database_of(sqlite_server), email) == 0


# The same races in-process, on every configured backend --------------------------------------


async def count_users(app: Quart, email: str) -> int:
    async with db_session(app) as db:
        query = select(func.count()).select_from(User).where(func.lower(User.email) == email)
        return int((await db.execute(query)).scalar_one())


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    app_config["RATE_LIMIT_ENABLED"] = "false"
    return app_config


async def test_in_process_duplicate_signup_race(app: Quart) -> None:
    client = app.test_client()
    responses = await asyncio.gather(
        *(client.post("/signup", json=signup_body("dup@example.com")) for _ in range(15))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [400] * 14
    assert await count_users(app, "dup@example.com") == 1


async def test_in_process_forty_distinct_signups(app: Quart) -> None:
    client = app.test_client()
    emails = [f"p{i}@example.com" for i in range(40)]
    responses = await asyncio.gather(
        *(client.post("/signup", json=signup_body(email)) for email in emails)
    )
    assert [response.status_code for response in responses] == [201] * 40
    async with db_session(app) as db:
        assert (await db.execute(select(func.count()).select_from(User))).scalar_one() == 40


# A login burst leaves other requests fast ----------------------------------------------------


@pytest.fixture(scope="module")
def slow_hash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Costly argon2 and one worker: every login queues on that worker's small hash pool.
    folder = tmp_path_factory.mktemp("burst-server")
    env = server_env(folder, ARGON2_MEMORY_COST="32768", ARGON2_TIME_COST="3", HASH_WORKERS="2")
    with running_server(env, workers=1) as server:
        yield server


async def timed(coroutine: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await coroutine
    return response, time.monotonic() - started


async def test_a_login_burst_leaves_other_requests_fast(slow_hash_server: Server) -> None:
    email = "burst@example.com"
    async with http_client(slow_hash_server) as http:
        assert (await http.post("/signup", json=signup_body(email))).status_code == 201
        login = await http.post("/login", json={"email": email, "password": PASSWORD})
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        body = {"email": email, "password": PASSWORD}
        burst = [asyncio.create_task(timed(http.post("/login", json=body))) for _ in range(20)]
        await asyncio.sleep(0.3)  # the hash pool is busy now
        probes = []
        for path in ("/healthz", "/dashboard", "/healthz", "/me", "/healthz"):
            probes.append(await timed(http.get(path, headers=auth)))
            await asyncio.sleep(0.05)
        logins = await asyncio.gather(*burst)
    assert [response.status_code for response, _ in logins] == [200] * 20
    assert [response.status_code for response, _ in probes] == [200] * 5
    slowest_login = max(elapsed for _, elapsed in logins)
    slowest_probe = max(elapsed for _, elapsed in probes)
    # Probes answer while logins still queue for the hash pool: the event loop never waits on it.
    assert slowest_probe < 1.0, (slowest_probe, slowest_login)
    assert slowest_login > 2 * slowest_probe, (slowest_probe, slowest_login)
    print(  # the numbers are worth seeing in -s runs
        f"burst: slowest login {slowest_login:.2f}s, median login "
        f"{statistics.median(e for _, e in logins):.2f}s, slowest probe {slowest_probe:.3f}s"
    )
