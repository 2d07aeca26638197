"""SPEC §9: a mail a request causes is not lost (issue 21): the outbox and its sender.

Real parts: aiosmtpd servers (the Inbox of test_mail_flows.py), a silent TCP server for an
SMTP server that hangs, a redis-server of the test's own (tests/stores.py) to stop, and a
second app on the same database for a restart or a second worker. Time beyond the first try
is driven by the sender's clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from quart import Quart
from sqlalchemy import func, select

from quart_auth_app import create_app, outbox
from quart_auth_app.models import MailToken, OutboxMail, utcnow
from quart_auth_app.outbox import MailSender
from quart_auth_app.testing import app_services, db_session, deliver_mail, make_user
from quart_auth_app.web.mail_jobs import composer

from ..conftest import running_app, services_on
from ..mail_server import Inbox
from ..servers import FAST_HASHING, child_environment, free_port, running_serve
from ..stores import RedisServer
from .test_mail_flows import SIGNUP, link_in, token_of
from .test_storage_down import missing_database

EMAIL = SIGNUP["email"]
PENDING = "mails pending, they will be sent after the next start"


class Clock:
    """A clock the test moves: the sender's idea of now."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class CountingInbox(Inbox):
    """An inbox that counts the connections open at once, and may take its time over each message."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.lock = threading.Lock()
        self.open = 0
        self.most_open = 0

    def connected(self) -> None:
        with self.lock:
            self.open += 1
            self.most_open = max(self.most_open, self.open)

    def disconnected(self) -> None:
        with self.lock:
            self.open -= 1

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class CountingSMTP(SMTP):
    def connection_made(self, transport: Any) -> None:
        self.event_handler.connected()
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.event_handler.disconnected()
        super().connection_lost(error)


class CountingController(Controller):
    def factory(self) -> SMTP:
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


@contextlib.contextmanager
def smtp(inbox: CountingInbox) -> Iterator[str]:
    """A real SMTP server delivering into `inbox`, for the block; yields its MAIL_URL."""
    controller = CountingController(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{controller.port}"
    finally:
        controller.stop()


@contextlib.asynccontextmanager
async def silent_smtp() -> AsyncIterator[str]:
    """A server that accepts connections and never greets: every send hangs until cancelled."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        yield f"smtp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


@contextlib.asynccontextmanager
async def same_database(config: dict[str, Any]) -> AsyncIterator[Quart]:
    """Another app (a restart, or another worker) on the database of an app already made."""
    application = create_app(config)
    async with application.test_app():
        yield application


def sender_of(app: Quart) -> MailSender:
    found: MailSender = app.extensions["mail_sender"]
    return found


def own_sender(app: Quart, clock: Clock) -> MailSender:
    """A sender on the app's services driven by `clock`, instead of the app's own."""
    services = app_services(app)
    return MailSender(
        services.db_sessions,
        services.mailer,
        services.throttle,
        composer(app),
        services.settings,
        clock=clock,
    )


async def outbox_rows(app: Quart) -> list[OutboxMail]:
    async with db_session(app) as db:
        return list((await db.scalars(select(OutboxMail).order_by(OutboxMail.id))).all())


async def forgot(app: Quart, times: int, email: str = EMAIL) -> None:
    client = app.test_client()
    for _ in range(times):
        response = await client.post("/password/forgot", json={"email": email})
        assert response.status_code == 202


def mails_to(inbox: Inbox, address: str = EMAIL) -> list[Any]:
    return [message for message in inbox.messages if message["To"] == address]


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "PUBLIC_URL": "http://localhost"}


# --- nothing lost ---------------------------------------------------------------------------


async def test_a_signup_while_smtp_is_down_is_mailed_after_a_restart(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    config = {**app_config, "MAIL_URL": f"smtp://127.0.0.1:{free_port()}"}  # nothing listens
    with caplog.at_level(logging.WARNING, logger="quart_auth_app"):
        async with running_app(config) as app:
            assert (await app.test_client().post("/signup", json=SIGNUP)).status_code == 201
            await deliver_mail(app)
            [row] = await outbox_rows(app)
            assert (row.attempts, row.failed_at, row.claimed_by) == (1, None, None)
            assert row.text is not None and "token=" in row.text  # the token waits with its mail
    assert any(r.getMessage() == f"1 {PENDING}" for r in caplog.records)
    assert not any("token=" in r.getMessage() for r in caplog.records)

    inbox = CountingInbox()
    with smtp(inbox) as mail_url:
        async with same_database({**config, "MAIL_URL": mail_url}) as restarted:
            sender = sender_of(restarted)
            sender.clock = lambda: utcnow() + timedelta(seconds=31)  # past the first backoff
            await deliver_mail(restarted)
            [message] = mails_to(inbox)
            verified = await restarted.test_client().get(
                f"/verify?token={token_of(link_in(message))}"
            )
            assert verified.status_code == 200
            assert await outbox_rows(restarted) == []  # sent: the row and its token are gone


async def test_redis_down_right_after_signup_delays_the_mail_and_loses_nothing(
    app_config: dict[str, Any], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = CountingInbox()
    with smtp(inbox) as mail_url:
        config = {
            **app_config,
            "MAIL_URL": mail_url,
            "REDIS_URL": redis_server.url,
            "REDIS_KEY_PREFIX": f"qaa-outbox-{uuid.uuid4().hex[:8]}",
        }
        async with running_app(config) as app:
            await sender_of(app).stop()  # the request's mail must wait for the stop below
            assert (await app.test_client().post("/signup", json=SIGNUP)).status_code == 201
            redis_server.stop()
            clock = Clock()
            sender = own_sender(app, clock)
            sender.start()
            try:
                with caplog.at_level(logging.WARNING, logger="quart_auth_app"):
                    await sender.drain()
                [row] = await outbox_rows(app)
                assert row.attempts == 1 and row.text is None  # no token issued without the cap
                assert "ServiceUnavailable" in (row.last_error or "")
                assert mails_to(inbox) == []
                redis_server.start()
                clock.advance(31)
                await sender.drain()
            finally:
                await sender.stop()
            assert len(mails_to(inbox)) == 1
            assert await outbox_rows(app) == []
    assert any("could not send the verify mail" in r.getMessage() for r in caplog.records)


async def test_the_request_answers_503_when_its_mail_cannot_be_recorded(
    app: Quart, tmp_path: Any
) -> None:
    await make_user(app, email=EMAIL)
    client = app.test_client()
    async with services_on(app, missing_database(tmp_path)):
        known = await client.post("/password/forgot", json={"email": EMAIL})
        unknown = await client.post("/password/forgot", json={"email": "nobody@example.com"})
    for response in (known, unknown):
        assert response.status_code == 503
        assert await response.get_json() == {"message": "Service temporarily unavailable"}


async def test_a_request_for_an_unknown_address_queues_the_same_and_sends_nothing(
    app_config: dict[str, Any],
) -> None:
    inbox = CountingInbox()
    with smtp(inbox) as mail_url:
        async with running_app({**app_config, "MAIL_URL": mail_url}) as app:
            await sender_of(app).stop()
            await make_user(app, email=EMAIL)
            await forgot(app, 1)
            await forgot(app, 1, "nobody@example.com")
            queued = await outbox_rows(app)
            # Both requests wrote the same kind of row: an intent, no token, no body yet.
            assert [(r.purpose, r.text, r.subject) for r in queued] == [("reset", None, None)] * 2
            sender_of(app).start()
            await deliver_mail(app)
            assert [m["To"] for m in inbox.messages] == [EMAIL]
            assert await outbox_rows(app) == []
            async with db_session(app) as db:
                assert await db.scalar(select(func.count()).select_from(MailToken)) == 1


# --- retries --------------------------------------------------------------------------------


async def test_failed_sends_back_off_exponentially_then_the_mail_is_kept_as_failed(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    config = {
        **app_config,
        "MAIL_URL": f"smtp://127.0.0.1:{free_port()}",
        "MAIL_MAX_ATTEMPTS": "3",
        "MAIL_RETRY_SECONDS": "10",
    }
    async with running_app(config) as app:
        await sender_of(app).stop()
        await make_user(app, email=EMAIL)
        await forgot(app, 1)
        clock = Clock()
        sender = own_sender(app, clock)
        sender.start()
        try:
            attempts = []
            with caplog.at_level(logging.WARNING, logger="quart_auth_app"):
                # First try at once; then 10 s, then 20 s later (doubling).
                for wait in (0, 9.9, 0.1, 19.9, 0.1):
                    clock.advance(wait)
                    await sender.drain()
                    attempts.append((await outbox_rows(app))[0].attempts)
        finally:
            await sender.stop()
        assert attempts == [1, 1, 2, 2, 3]
        [row] = await outbox_rows(app)
        assert row.failed_at is not None and row.text is None and row.html is None
        assert row.subject == "Reset your password" and row.last_error
    messages = [r.getMessage() for r in caplog.records]
    assert sum("could not send the reset mail" in m for m in messages) == 3
    assert any("gave up after 3 attempts" in m for m in messages)
    assert not any("token=" in m for m in messages)


def test_the_backoff_doubles_up_to_its_cap() -> None:
    first = timedelta(seconds=30)
    assert [outbox.retry_delay(n, first).total_seconds() for n in (1, 2, 3, 4)] == [
        30,
        60,
        120,
        240,
    ]
    assert outbox.retry_delay(50, first) == outbox.MAX_RETRY_DELAY


# --- bounds and leases ----------------------------------------------------------------------


async def test_200_forgotten_passwords_against_slow_smtp_stay_within_mail_concurrency(
    app_config: dict[str, Any],
) -> None:
    inbox = CountingInbox(delay=0.02)
    with smtp(inbox) as mail_url:
        config = {
            **app_config,
            "MAIL_URL": mail_url,
            "MAIL_CONCURRENCY": "3",
            "RATE_LIMIT_ENABLED": "false",  # 200 mails to one inbox, from one client
        }
        async with running_app(config) as app:
            await make_user(app, email=EMAIL)
            await forgot(app, 200)
            await deliver_mail(app)
    assert len(mails_to(inbox)) == 200
    assert inbox.most_open == 3


async def test_two_senders_on_one_database_never_send_a_row_twice(
    app_config: dict[str, Any],
) -> None:
    inbox = CountingInbox(delay=0.005)
    with smtp(inbox) as mail_url:
        config = {**app_config, "MAIL_URL": mail_url, "RATE_LIMIT_ENABLED": "false"}
        async with running_app(config) as first, same_database(config) as second:
            senders = [sender_of(first), sender_of(second)]
            for sender in senders:
                await sender.stop()
            await make_user(first, email=EMAIL)
            await forgot(first, 30)
            await forgot(second, 30)
            for sender in senders:
                sender.start()
            await asyncio.gather(*(sender.drain() for sender in senders))
            assert await outbox_rows(first) == []
    tokens = [token_of(link_in(message)) for message in mails_to(inbox)]
    assert len(tokens) == len(set(tokens)) == 60


async def test_a_lease_keeps_a_claimed_row_from_other_senders_until_it_expires(
    app: Quart, user: Any
) -> None:
    await sender_of(app).stop()
    await forgot(app, 1)
    now = utcnow()
    async with db_session(app) as db:
        taken = await outbox.claim(db, "first", now, timedelta(seconds=60))
        assert taken is not None
        assert await outbox.claim(db, "second", now + timedelta(seconds=59), timedelta(60)) is None
        again = await outbox.claim(db, "second", now + timedelta(seconds=61), timedelta(60))
        assert again is not None and again.id == taken.id and again.claimed_by == "second"


# --- shutdown -------------------------------------------------------------------------------


async def test_shutdown_with_mail_pending_logs_the_count_and_the_next_start_sends_them(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "SHUTDOWN_GRACE_SECONDS", 0.3)
    async with silent_smtp() as hanging:
        config = {
            **app_config,
            "MAIL_URL": hanging,
            "MAIL_TIMEOUT": "60",
            "RATE_LIMIT_ENABLED": "false",
        }
        with caplog.at_level(logging.WARNING, logger="quart_auth_app"):
            async with running_app(config) as app:
                await make_user(app, email=EMAIL)
                await forgot(app, 50)
                sender = sender_of(app)
                for _ in range(500):  # the sender starts its (hanging) sends, within 5 s
                    if len(sender.sending) >= 4:
                        break
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.05)
                assert len(sender.sending) == 4  # MAIL_CONCURRENCY's default, no more
    assert [r.getMessage() for r in caplog.records if PENDING in r.getMessage()] == [
        f"50 {PENDING}"
    ]

    inbox = CountingInbox()
    with smtp(inbox) as mail_url:
        async with same_database({**config, "MAIL_URL": mail_url}) as restarted:
            await deliver_mail(restarted)
            assert await outbox_rows(restarted) == []
    assert len(mails_to(inbox)) == 50


# --- a real server, stopped by SIGTERM --------------------------------------------------------


def test_sigterm_with_50_mails_pending_says_so_and_the_restarted_server_sends_them(
    tmp_path: Path,
) -> None:
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)  # connections complete in the backlog and are never greeted
    env = child_environment(
        {
            "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
            "RATE_LIMIT_ENABLED": "false",
            "PUBLIC_URL": "http://localhost",
            "MAIL_TIMEOUT": "60",
            **FAST_HASHING,
        }
    )
    with hanging:
        port = hanging.getsockname()[1]
        with running_serve({**env, "MAIL_URL": f"smtp://127.0.0.1:{port}"}, workers=1) as server:
            assert httpx.post(f"{server.url}/signup", json=SIGNUP).status_code == 201
            for _ in range(49):
                forgot = httpx.post(f"{server.url}/password/forgot", json={"email": EMAIL})
                assert forgot.status_code == 202
            assert server.stop() == 0
            assert f"50 {PENDING}" in server.log()

    inbox = CountingInbox()
    with smtp(inbox) as mail_url, running_serve({**env, "MAIL_URL": mail_url}, workers=1):
        deadline = time.monotonic() + 20
        while len(inbox.messages) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
    subjects = sorted(message["Subject"] for message in mails_to(inbox))
    assert subjects == ["Reset your password"] * 49 + ["Verify your email address"]
