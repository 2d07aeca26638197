"""SPEC §9: a store that fails makes the requests that need it a 503, never a 500, and heals alone.

Real faults, no mocks: a PostgreSQL cluster and a redis-server of the tests' own (tests/stores.py),
shut down, restarted and frozen with SIGSTOP while requests keep coming; SQLite files on small
file systems of their own, made read-only or filled up. Every scenario lasts seconds. Tests
skip, saying why, where initdb/pg_ctl or redis-server are missing (under CI=true they fail: CI
has them) or where mounting is refused (it needs root).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import text

from quart_auth_app import create_app
from quart_auth_app.speed.postgres_reader import PostgresReader, StoreFailed
from quart_auth_app.testing import DEFAULT_PASSWORD, app_services, make_user, sign_in
from quart_auth_app.web.auth import ACCESS_COOKIE
from quart_auth_app.web.state import request_db

from ..conftest import BROWSER, FAST_HASHING, bearer, reset_postgres, running_app
from ..stores import (
    PgCluster,
    RedisServer,
    Unavailable,
    fill_up,
    immutable,
    missing_server,
    mounted,
    throwaway_cluster,
)

TIMEOUT = 2  # DATABASE_TIMEOUT here; Redis's socket timeout is 2 s too (services.py)
# What a request may take beyond the one timeout it waited on: a hash, scheduling, a slow CI.
MARGIN = 1.5
UNAVAILABLE = {"message": "Service temporarily unavailable"}
# Each kind of request and what it answers while every store works.
SUCCESS = {"bearer": 200, "cookie": 200, "login": 200, "logged out": 401, "healthz": 200}
SQLITE_BACKENDS = pytest.mark.parametrize("backend", ["sqlite", "sqlite-plain"], indirect=True)
# Redis faults do not depend on the database: SQLite is enough there.
ONE_BACKEND = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

Send = Callable[[], Awaitable[Any]]


@dataclass
class Answer:
    kind: str
    status: int
    retry_after: str | None
    body: Any  # the JSON body; None for pages
    started: float
    ended: float

    @property
    def took(self) -> float:
        return self.ended - self.started


async def answer(kind: str, send: Send) -> Answer:
    started = time.monotonic()
    response = await send()
    body = await response.get_json() if response.mimetype == "application/json" else None
    return Answer(
        kind,
        response.status_code,
        response.headers.get("Retry-After"),
        body,
        started,
        time.monotonic(),
    )


def assert_success_or_503(answers: list[Answer]) -> None:
    """Each answer is its kind's success or SPEC §9's 503: never a 500, never a revoked token let in."""
    for found in answers:
        assert found.status in (SUCCESS[found.kind], 503), found
        if found.status == 503 and found.kind != "healthz":  # /healthz has its own body
            assert found.retry_after == "5", found
            assert found.body in (UNAVAILABLE, None), found  # None: the page a browser reads


async def senders(app: Quart) -> dict[str, Send]:
    """A signed-in user's protected requests (bearer; cookie from a browser), logins, /healthz,
    and a token that was logged out before the fault."""
    user = await make_user(app, email=f"faults-{uuid.uuid4().hex[:8]}@example.com")
    live = await sign_in(app, user)
    ended = await sign_in(app, user)
    client = app.test_client()
    assert (await client.post("/logout", headers=bearer(ended.access_token))).status_code == 200
    browser = app.test_client()
    browser.set_cookie("localhost", ACCESS_COOKIE, live.access_token)
    credentials = {"email": user.email, "password": DEFAULT_PASSWORD}
    return {
        "bearer": lambda: client.get("/dashboard", headers=bearer(live.access_token)),
        "cookie": lambda: browser.get("/dashboard", headers=BROWSER),
        "login": lambda: client.post("/login", json=credentials),
        "logged out": lambda: client.get("/dashboard", headers=bearer(ended.access_token)),
        "healthz": lambda: client.get("/healthz"),
    }


@dataclass
class Load:
    answers: list[Answer]
    fault_started: float
    fault_ended: float

    def during_fault(self) -> list[Answer]:
        """Answers to requests sent after the fault began and answered before it ended."""
        return [
            a for a in self.answers if a.started > self.fault_started and a.ended < self.fault_ended
        ]

    def after(self, seconds: float) -> list[Answer]:
        """Answers to requests sent `seconds` after the fault ended."""
        return [a for a in self.answers if a.started > self.fault_ended + seconds]


async def under_load(requests: dict[str, Send], fault: Callable[[], Awaitable[None]]) -> Load:
    """Send every kind of request in a loop of its own before, during and 3 s after `fault`."""
    answers: list[Answer] = []
    stop = asyncio.Event()

    async def keep_sending(kind: str, send: Send) -> None:
        while not stop.is_set():
            answers.append(await answer(kind, send))
            await asyncio.sleep(0.02)

    loops = [asyncio.create_task(keep_sending(kind, send)) for kind, send in requests.items()]
    try:
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await fault()
        ended = time.monotonic()
        await asyncio.sleep(3)
    finally:
        stop.set()
        await asyncio.gather(*loops)
    return Load(answers, started, ended)


async def until_all_succeed(requests: dict[str, Send], within: float = 5) -> list[Answer]:
    """Send every request until all succeed at once (the store came back), for `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        answers = list(await asyncio.gather(*(answer(k, s) for k, s in requests.items())))
        if all(a.status == SUCCESS[a.kind] for a in answers) or time.monotonic() > deadline:
            return answers
        await asyncio.sleep(0.2)


def assert_succeeded(answers: list[Answer]) -> None:
    assert [(a.kind, a.status) for a in answers] == [(a.kind, SUCCESS[a.kind]) for a in answers]


# --- PostgreSQL: one throw-away cluster for the module, restarted and frozen mid-load ---


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with contextlib.ExitStack() as stack:
        try:
            found = stack.enter_context(throwaway_cluster())
        except Unavailable as missing:
            missing_server(missing)
        yield found


@pytest.fixture(params=["accelerated", "plain"])
def pg_config(request: pytest.FixtureRequest, cluster: PgCluster, tmp_path: Path) -> dict[str, Any]:
    # Both access checks: speed/'s batched reader on its own connection, and the engine's pool.
    return cluster_config(cluster, tmp_path, accelerated=request.param == "accelerated")


def cluster_config(cluster: PgCluster, tmp_path: Path, *, accelerated: bool) -> dict[str, Any]:
    return {
        "ACCELERATIONS": "true" if accelerated else "false",
        **FAST_HASHING,
        "DATABASE_URL": cluster.url,
        "INSTANCE_PATH": str(tmp_path),
        "DATABASE_TIMEOUT": str(TIMEOUT),
        "RATE_LIMIT_ENABLED": "false",  # the loops log in far more often than a person would
    }


async def test_postgres_shutdown_and_restart_mid_load_are_503_then_heal(
    cluster: PgCluster, pg_config: dict[str, Any]
) -> None:
    async def shut_down_and_restart() -> None:
        # Smart: new connections are refused ("shutting down") while the app's stay served;
        # then fast: every session is ended, and the server is "starting up" for a moment.
        await asyncio.to_thread(cluster.stop, "smart", 1)
        await asyncio.to_thread(cluster.restart, "fast")

    async with running_app(pg_config) as app:
        requests = await senders(app)
        load = await under_load(requests, shut_down_and_restart)
        assert_success_or_503(load.answers)
        assert any(a.status == 503 for a in load.answers), "the restart went unnoticed"
        healed = load.after(0.5)
        assert {a.kind for a in healed} == set(SUCCESS)
        assert_succeeded(healed)  # the same app, not restarted
        assert_succeeded(await until_all_succeed(requests, within=0))


async def test_postgres_frozen_answers_503_within_the_timeout_then_heals(
    cluster: PgCluster, pg_config: dict[str, Any]
) -> None:
    async def freeze() -> None:
        cluster.freeze()  # the postmaster and every backend: connections open, nothing answers
        try:
            await asyncio.sleep(2 * TIMEOUT + 1)
        finally:
            cluster.thaw()

    async with running_app(pg_config) as app:
        requests = await senders(app)
        load = await under_load(requests, freeze)
        assert_success_or_503(load.answers)  # the logged-out token included: never let in
        slowest = max(load.answers, key=lambda a: a.took)
        assert slowest.took < TIMEOUT + MARGIN, slowest
        frozen = load.during_fault()
        assert {a.kind for a in frozen} == set(SUCCESS)
        assert {a.status for a in frozen} == {503}
        assert_succeeded(load.after(1))


async def test_a_reconnect_to_a_frozen_server_ends_at_the_callers_time(
    cluster: PgCluster, tmp_path: Path
) -> None:
    # A connect to a stalled server runs on to its own timeout (DATABASE_TIMEOUT) whoever gave
    # up on it: speed/'s reader runs it in a task of its own, and a caller waits only its own
    # time (a reader timeout shorter than the connect's here; they were added up before).
    async with running_app(cluster_config(cluster, tmp_path, accelerated=True)) as app:
        reader = PostgresReader(app_services(app).engine, timeout=0.5)
        try:
            assert await reader.user_by_email("nobody@example.com") is None  # holds a connection
            cluster.freeze()
            try:
                # The first read times out on the held connection, which is dropped; the next
                # ones wait for the reconnect.
                for _ in range(3):
                    started = time.monotonic()
                    with pytest.raises((TimeoutError, StoreFailed)):
                        await reader.user_by_email("nobody@example.com")
                    assert time.monotonic() - started < 0.5 + 0.4
            finally:
                cluster.thaw()
            for _ in range(50):
                with contextlib.suppress(TimeoutError, StoreFailed):
                    assert await reader.user_by_email("nobody@example.com") is None
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the reader did not reconnect once the server answered")
        finally:
            await reader.close()


# --- Redis: the revocation list and the counters fail closed, and come back ---


@pytest.fixture
async def redis_app(app_config: dict[str, Any], redis_server: RedisServer) -> AsyncIterator[Quart]:
    if not redis_server.answers():
        redis_server.start()  # a test before this one left it stopped
    app_config.update(
        REDIS_URL=redis_server.url,
        REDIS_KEY_PREFIX=f"qaa-faults-{uuid.uuid4().hex[:8]}",
        AUTH_ATTEMPTS_PER_MINUTE="10000",
    )
    async with running_app(app_config) as app:
        yield app


async def all_at_once(requests: dict[str, Send]) -> list[Answer]:
    return list(await asyncio.gather(*(answer(k, s) for k, s in requests.items())))


@ONE_BACKEND
async def test_redis_stopped_fails_closed_then_heals_when_restarted(
    redis_app: Quart, redis_server: RedisServer
) -> None:
    requests = await senders(redis_app)
    del requests["healthz"]  # another check's business (SPEC §9 /healthz)
    redis_server.stop()
    try:
        answers = await all_at_once(requests)
    finally:
        redis_server.start()  # empty: the revocation of the logged-out token is only in the database
    assert {(a.kind, a.status) for a in answers} == {(kind, 503) for kind in requests}
    assert_success_or_503(answers)
    assert max(a.took for a in answers) < TIMEOUT + MARGIN
    assert_succeeded(await until_all_succeed(requests))


@ONE_BACKEND
async def test_redis_frozen_fails_closed_within_the_socket_timeout_then_heals(
    redis_app: Quart, redis_server: RedisServer
) -> None:
    requests = await senders(redis_app)
    del requests["healthz"]
    redis_server.freeze()
    try:
        answers = await all_at_once(requests)
    finally:
        redis_server.thaw()
    assert {(a.kind, a.status) for a in answers} == {(kind, 503) for kind in requests}
    assert_success_or_503(answers)
    assert max(a.took for a in answers) < TIMEOUT + MARGIN
    assert_succeeded(await until_all_succeed(requests))


# --- SQLite: the file made read-only, the disk full ---


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    """A small ext4 file system: there, unlike tmpfs, an immutable file refuses the writes of
    connections that opened it earlier, as a read-only file system does."""
    with contextlib.ExitStack() as stack:
        try:
            yield stack.enter_context(mounted("ext4", tmp_path / "ext4", size="16M"))
        except Unavailable as missing:
            pytest.skip(str(missing))


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, to fill up."""
    with contextlib.ExitStack() as stack:
        try:
            yield stack.enter_context(mounted("tmpfs", tmp_path / "tmpfs", size="2m"))
        except Unavailable as missing:
            pytest.skip(str(missing))


@dataclass
class Writer:
    """The writes of one signed-in user: JSON and form logins, and refreshes along one family."""

    app: Quart
    email: str
    refresh_token: str

    async def login(self) -> Answer:
        credentials = {"email": self.email, "password": DEFAULT_PASSWORD}
        return await answer(
            "login", lambda: self.app.test_client().post("/login", json=credentials)
        )

    async def form_login(self) -> Answer:
        form = {"email": self.email, "password": DEFAULT_PASSWORD}
        client = self.app.test_client()
        return await answer("form", lambda: client.post("/login", form=form, headers=BROWSER))

    async def refresh(self) -> Answer:
        body = {"refresh_token": self.refresh_token}
        found = await answer(
            "refresh", lambda: self.app.test_client().post("/token/refresh", json=body)
        )
        if found.status == 200:
            self.refresh_token = found.body["refresh_token"]
        return found

    async def read(self, access_token: str) -> int:
        response = await self.app.test_client().get("/dashboard", headers=bearer(access_token))
        return int(response.status_code)

    async def refused(self) -> None:
        """Every write answers SPEC §9's 503 (the form its page), never a 500."""
        for found in (await self.login(), await self.refresh(), await self.form_login()):
            assert (found.kind, found.status, found.retry_after) == (found.kind, 503, "5"), found
            assert found.body in (UNAVAILABLE, None), found

    async def heals(self) -> None:
        """Writes succeed again within seconds, and keep succeeding (no connection left stuck)."""
        deadline = time.monotonic() + 5
        while (await self.login()).status != 200:
            assert time.monotonic() < deadline, "logins did not recover"
            await asyncio.sleep(0.2)
        logins = [(await self.login()).status for _ in range(8)]  # more than the pool holds
        refreshes = [(await self.refresh()).status for _ in range(3)]
        assert (logins, refreshes, (await self.form_login()).status) == ([200] * 8, [200] * 3, 302)


async def writer_for(app: Quart, email: str) -> tuple[Writer, str]:
    """A writer for a new user, warmed up (a login and a refresh), and a live access token."""
    user = await make_user(app, email=email)
    tokens = await sign_in(app, user)
    writer = Writer(app, email, tokens.refresh_token)
    assert ((await writer.login()).status, (await writer.refresh()).status) == (200, 200)
    return writer, tokens.access_token


@SQLITE_BACKENDS
async def test_sqlite_file_made_read_only_answers_503_and_heals_without_restart(
    app_config: dict[str, Any], ext4: Path
) -> None:
    folder = ext4 / "db"
    folder.mkdir()
    database = folder / "app.db"
    app_config.update(DATABASE_URL=f"sqlite+aiosqlite:///{database}", DATABASE_TIMEOUT=str(TIMEOUT))
    # The database, its WAL and their folder: nothing there can be written, opened for writing,
    # created or deleted. (Not the -shm index: SQLite maps it, and writes to a mapping of an
    # immutable file kill the process instead of failing.)
    read_only = (database, Path(f"{database}-wal"), folder)
    async with contextlib.AsyncExitStack() as stack:
        running = await stack.enter_async_context(running_app(app_config))
        writer, access = await writer_for(running, "ro@example.com")
        immutable(*read_only)
        try:
            # A worker started meanwhile opens every connection while the file is read-only.
            restarted = await stack.enter_async_context(running_app(app_config))
            replaced = Writer(restarted, writer.email, writer.refresh_token)
            for each in (writer, replaced):
                await each.refused()
                assert await each.read(access) == 200  # reading needs no writable file
        finally:
            immutable(*read_only, on=False)
        await writer.heals()
        replaced.refresh_token = writer.refresh_token
        await replaced.heals()


@SQLITE_BACKENDS
async def test_sqlite_disk_full_answers_503_and_heals_without_restart(
    app_config: dict[str, Any], tmpfs: Path
) -> None:
    app_config.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmpfs / 'app.db'}", DATABASE_TIMEOUT=str(TIMEOUT)
    )
    async with running_app(app_config) as app:
        writer, access = await writer_for(app, "full@example.com")
        filler = fill_up(tmpfs)
        try:
            await writer.refused()
            signup = {"name": "Fay", "email": "fay@example.com", "password": DEFAULT_PASSWORD}
            found = await answer("signup", lambda: app.test_client().post("/signup", json=signup))
            assert (found.status, found.retry_after, found.body) == (503, "5", UNAVAILABLE)
            assert await writer.read(access) == 200
        finally:
            filler.unlink()
        await writer.heals()
        assert (await app.test_client().post("/signup", json=signup)).status_code == 201


@SQLITE_BACKENDS
async def test_sqlite_write_lock_held_elsewhere_answers_503_within_the_timeout(
    app_config: dict[str, Any],
) -> None:
    app_config["DATABASE_TIMEOUT"] = "1"
    database = app_config["DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
    async with running_app(app_config) as app:
        writer, _ = await writer_for(app, "lock@example.com")
        # Another process's long write transaction (a script, a VACUUM): the lock stays taken.
        with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            try:
                answers = await asyncio.gather(*(writer.login() for _ in range(5)))
            finally:
                other.execute("ROLLBACK")
        assert {(a.status, a.retry_after) for a in answers} == {(503, "5")}
        # The logins queued behind the first each wait one timeout at most, not their turn in
        # a queue of timeouts: their turn, then SQLite's busy wait.
        assert max(a.took for a in answers) < 2 * 1 + MARGIN
        await writer.heals()


# --- Mistakes in the code stay 500s: only the store's own failures are 503s ---

MISTAKES = {
    "syntax": "SELEC 1",
    "constraint": "INSERT INTO users (public_id, name, email, password) VALUES ('p', 'n', NULL, 'x')",
}


async def mistakes_answer_500(config: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    if config["DATABASE_URL"].startswith("postgresql"):
        await reset_postgres(config["DATABASE_URL"])
    app = create_app(config)

    async def mistake(kind: str) -> str:
        await request_db().execute(text(MISTAKES[kind]))
        return "unreachable"

    app.add_url_rule("/test-only/mistake/<kind>", view_func=mistake)
    async with app.test_app():
        for kind in MISTAKES:
            caplog.clear()
            response = await app.test_client().get(f"/test-only/mistake/{kind}")
            assert response.status_code == 500, kind
            assert "Retry-After" not in response.headers
            logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
            assert logged and logged[0].exc_info is not None, kind  # with its traceback


async def test_sql_mistakes_answer_500_and_are_logged(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    await mistakes_answer_500(app_config, caplog)


async def test_sql_mistakes_answer_500_and_are_logged_on_postgres(
    pg_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    await mistakes_answer_500(pg_config, caplog)
