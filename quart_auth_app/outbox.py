"""The mail outbox (SPEC §9): a mail a request causes is recorded, then sent with retries.

Where the recording happens, and why. A request that causes a mail (signup, forgot password,
resend verification) answers the same for every address, so what it does must cost the same
whether or not the address has an account. It therefore records only its intent: one row with
the purpose, the address as given and the base of the links, committed in the request's own
transaction before it answers (web/mail_jobs.py). That write is the same for every address;
a store failure answers 503 for every address alike (faults.py) and the client retries; and
once the answer is 2xx nothing is lost, whatever stops afterwards.

The sender of each worker then claims the row under a lease and, in ONE transaction, looks the
account up, asks the throttle for the per-address mail cap, issues the token and stores the
rendered mail that carries it: the token and its mail commit together or not at all. No
account, nothing to verify, or the cap reached: the row is deleted and nothing is sent. Then
it sends, and deletes the row (its body holds the token) once the server has the mail.

A failure at any step (SMTP down or slow, the database, the Redis behind the throttle) leaves
the row for another try after an exponential backoff (MAIL_RETRY_SECONDS, doubling, capped at
an hour). Redis down therefore delays a mail rather than losing or un-capping it. After
MAIL_MAX_ATTEMPTS tries the row is kept as failed, its body cleared, and logged. At most
MAIL_CONCURRENCY mails are sent at once per worker; on shutdown the sender stops claiming,
gives the sends in flight a moment, releases its leases and logs how many mails are left for
the next start. Delivery is at least once: a worker killed between the server's acceptance and
the row's deletion sends that mail again once the lease has expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from . import recovery
from .config import Settings
from .faults import describe
from .mail import Mail, Mailer
from .models import OutboxMail, User, utcnow
from .throttle import Throttle

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Renders the mail of a purpose for a user, its token and the base of its link (web/ does).
Compose = Callable[[str, User, str, str], Awaitable[Mail]]

# How often a sender looks for rows it was not woken for: other workers', a restart's, retries.
POLL_SECONDS = 5.0
MAX_RETRY_DELAY = timedelta(hours=1)
SHUTDOWN_GRACE_SECONDS = 3.0
# Due rows a claim chooses from at random, so that senders racing for one rarely collide.
CANDIDATES = 8
FAILED_KEPT = timedelta(days=7)
CLEANUP_BATCH = 500
# The longest address an account can have (users.email): longer ones are not queued.
MAX_RECIPIENT = 320
MAX_ERROR = 200


def queue(db: AsyncSession, purpose: str, email: str, base_url: str, now: datetime) -> bool:
    """Add a request's intent to mail `email` to the session; the caller commits it.

    False (nothing added) for an address no account can have: that says nothing about which
    addresses have one.
    """
    if len(email) > MAX_RECIPIENT:
        return False
    db.add(
        OutboxMail(
            purpose=purpose,
            recipient=email,
            base_url=base_url,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    return True


def queue_mail(db: AsyncSession, purpose: str, mail: Mail, now: datetime) -> None:
    """Add a mail rendered whole (a notice, no token to issue) to the session; the caller commits."""
    db.add(
        OutboxMail(
            purpose=purpose,
            recipient=mail.to,
            base_url="",
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


def _claimable(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        OutboxMail.failed_at.is_(None),
        OutboxMail.next_attempt_at <= now,
        or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now),
    )


async def claim(db: AsyncSession, owner: str, now: datetime, lease: timedelta) -> OutboxMail | None:
    """Take one due row under a lease for `owner`, or None when none is due.

    The conditional UPDATE is the claim: of senders racing for a row, one changes it and the
    others find it leased (PostgreSQL re-checks the condition on the row it waited for;
    SQLite writes one at a time).
    """
    while True:
        due = select(OutboxMail.id).where(*_claimable(now)).order_by(OutboxMail.next_attempt_at)
        candidates = list((await db.scalars(due.limit(CANDIDATES))).all())
        # The read ends first: SQLite cannot turn a read into a write once another sender wrote.
        await db.commit()
        if not candidates:
            return None
        random.shuffle(candidates)
        for row_id in candidates:
            taken: OutboxMail | None = await db.scalar(
                update(OutboxMail)
                .where(OutboxMail.id == row_id, *_claimable(now))
                .values(claimed_until=now + lease, claimed_by=owner)
                .returning(OutboxMail)
            )
            await db.commit()
            if taken is not None:
                return taken


async def prepare(
    db: AsyncSession, throttle: Throttle, row: OutboxMail, compose: Compose
) -> Mail | None:
    """The row's mail; a row still holding an intent gets its token and mail in one transaction.

    None when there is nothing to send (no account, nothing to verify, the address had enough
    mail for now, or another sender took the row over): the row is then gone or not ours.
    """
    if row.text is not None and row.subject is not None:
        return Mail(to=row.recipient, subject=row.subject, text=row.text, html=row.html)
    found = await recovery.token_for(db, throttle, row.purpose, row.recipient)
    if found is None:
        await db.execute(delete(OutboxMail).where(*_ours(row)))
        await db.commit()
        return None
    mail = await compose(row.purpose, *found, row.base_url)
    stored = await db.execute(
        update(OutboxMail)
        .where(*_ours(row))
        .values(recipient=mail.to, subject=mail.subject, text=mail.text, html=mail.html)
    )
    if stored.rowcount != 1:  # type: ignore[attr-defined]
        await db.rollback()  # the lease ran out: the token goes too, the new holder issues one
        return None
    await db.commit()
    return mail


def _ours(row: OutboxMail) -> tuple[ColumnElement[bool], ...]:
    return (OutboxMail.id == row.id, OutboxMail.claimed_by == row.claimed_by)


async def sent(db: AsyncSession, row: OutboxMail) -> None:
    """Delete a sent mail's row, and with it the token in its body."""
    await db.execute(delete(OutboxMail).where(*_ours(row)))
    await db.commit()


def retry_delay(attempts: int, first: timedelta) -> timedelta:
    """The wait after the `attempts`-th failure: `first`, doubling, at most MAX_RETRY_DELAY."""
    delay: timedelta = first * 2 ** min(attempts - 1, 32)
    return min(delay, MAX_RETRY_DELAY)


async def record_failure(
    db: AsyncSession, row: OutboxMail, error: str, now: datetime, settings: Settings
) -> bool:
    """Count a failed try and schedule the next; True when that was the last one allowed."""
    attempts = row.attempts + 1
    last = attempts >= settings.mail_max_attempts
    values: dict[str, object] = {
        "attempts": attempts,
        "last_error": error[:MAX_ERROR],
        "claimed_until": None,
        "claimed_by": None,
    }
    if last:
        values.update(failed_at=now, text=None, html=None)  # the token goes with the body
    else:
        delay = retry_delay(attempts, timedelta(seconds=settings.mail_retry_seconds))
        values["next_attempt_at"] = now + delay
    await db.execute(update(OutboxMail).where(*_ours(row)).values(**values))
    await db.commit()
    return last


async def release(db: AsyncSession, owner: str) -> None:
    """Give up the leases `owner` holds, so that the next sender takes the rows at once."""
    await db.execute(
        update(OutboxMail)
        .where(OutboxMail.claimed_by == owner)
        .values(claimed_until=None, claimed_by=None)
    )
    await db.commit()


async def pending(db: AsyncSession) -> int:
    """How many mails wait to be sent (failed ones excluded)."""
    count = await db.scalar(
        select(func.count()).select_from(OutboxMail).where(OutboxMail.failed_at.is_(None))
    )
    await db.commit()
    return int(count or 0)


async def cleanup(db: AsyncSession, now: datetime | None = None) -> int:
    """Delete one bounded batch of failed rows older than FAILED_KEPT; returns how many went."""
    cutoff = (now or utcnow()) - FAILED_KEPT
    stale = select(OutboxMail.id).where(OutboxMail.failed_at < cutoff).limit(CLEANUP_BATCH)
    result = await db.execute(delete(OutboxMail).where(OutboxMail.id.in_(stale)))
    await db.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def failure_text(error: BaseException) -> str:
    """A failure for the row and the log: its class and SMTP code, never a message (it may
    quote the mail); a database failure as faults.describe puts it."""
    code = getattr(error, "code", None)
    cause = error.__cause__
    suffix = f" {code}" if isinstance(code, int) else f" ({describe(cause)})" if cause else ""
    return f"{describe(error)}{suffix}"


class MailSender:
    """Sends the outbox's mails in the background of one worker, at most MAIL_CONCURRENCY at once."""

    def __init__(
        self,
        db_sessions: async_sessionmaker[AsyncSession],
        mailer: Mailer,
        throttle: Throttle,
        compose: Compose,
        settings: Settings,
        *,
        clock: Clock = utcnow,
        poll_seconds: float = POLL_SECONDS,
        grace_seconds: float | None = None,
    ) -> None:
        self.db_sessions = db_sessions
        self.mailer = mailer
        self.throttle = throttle
        self.compose = compose
        self.settings = settings
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.grace_seconds = SHUTDOWN_GRACE_SECONDS if grace_seconds is None else grace_seconds
        self.owner = secrets.token_hex(8)
        # Longer than one try can take (each SMTP step is bounded by MAIL_TIMEOUT).
        self.lease = timedelta(seconds=max(60, 6 * settings.mail_timeout))
        self.slots = asyncio.Semaphore(settings.mail_concurrency)
        self.sending: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._wakes = 0
        self._stopping = False
        self._store_down = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sending: at once what is due (left by a restart or others), then as woken."""
        self._stopping = False
        self._task = asyncio.create_task(self._run())

    def wake(self) -> None:
        """A mail was queued: look for it now rather than at the next poll."""
        self._wakes += 1
        self._idle.clear()
        self._wakeup.set()

    async def drain(self) -> None:
        """Return once every mail due now has been tried (for tests and tools)."""
        while self._task is not None and not self._task.done():
            self.wake()
            await self._idle.wait()
            if not self.sending:
                return
            await asyncio.wait(set(self.sending))

    async def stop(self) -> int:
        """Stop claiming, let the sends in flight finish briefly, release the rest; returns
        (and logs) how many mails are left for the next start."""
        if self._task is None:
            return 0
        self._stopping = True
        self.wake()
        # The loop first: a claim it is making may still start a send, which is waited for too
        # (one left running used the database after it was closed).
        await self._finish_loop()
        if self.sending:
            _, late = await asyncio.wait(set(self.sending), timeout=self.grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        try:
            async with self.db_sessions() as db:
                await release(db, self.owner)
                left = await pending(db)
        except Exception as exc:
            log.warning(
                "could not release the mail outbox at shutdown (%s): its mails are sent once"
                " their leases expire",
                describe(exc),
            )
            return -1
        if left:
            log.warning("%d mails pending, they will be sent after the next start", left)
        return left

    async def _finish_loop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # On a timeout wait_for cancels it; a lease it just took is released next.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, self.grace_seconds)

    async def _run(self) -> None:
        while not self._stopping:
            await self.slots.acquire()
            self._wakeup.clear()
            seen = self._wakes
            row = None if self._stopping else await self._claim()
            if row is None:
                self.slots.release()
                if seen == self._wakes:
                    self._idle.set()
                await self._wait()
                continue
            task = asyncio.create_task(self._deliver(row))
            self.sending.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.sending.discard(task)
        self.slots.release()

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_seconds):
                await self._wakeup.wait()

    async def _claim(self) -> OutboxMail | None:
        try:
            async with self.db_sessions() as db:
                row = await claim(db, self.owner, self.clock(), self.lease)
        except Exception as exc:
            if not self._store_down:
                log.warning("cannot read the mail outbox: %s (trying again)", describe(exc))
            self._store_down = True
            return None
        self._store_down = False
        return row

    async def _deliver(self, row: OutboxMail) -> None:
        try:
            async with self.db_sessions() as db:
                mail = await prepare(db, self.throttle, row, self.compose)
            if mail is None:
                return
            await self.mailer.send(mail)
        except Exception as exc:
            await self._failed(row, exc)
            return
        try:
            async with self.db_sessions() as db:
                await sent(db, row)
        except Exception as exc:
            log.warning(
                "mail %d was sent but stays in the outbox (%s): it is sent again once its lease"
                " expires",
                row.id,
                describe(exc),
            )

    async def _failed(self, row: OutboxMail, exc: Exception) -> None:
        error = failure_text(exc)
        attempt, limit = row.attempts + 1, self.settings.mail_max_attempts
        try:
            async with self.db_sessions() as db:
                last = await record_failure(db, row, error, self.clock(), self.settings)
        except Exception as store_error:
            log.warning(
                "could not send the %s mail %d: %s; nor record that (%s): tried again once its"
                " lease expires",
                row.purpose,
                row.id,
                error,
                describe(store_error),
            )
            return
        if last:
            log.error(
                "could not send the %s mail %d: %s; gave up after %d attempts (kept as failed)",
                row.purpose,
                row.id,
                error,
                attempt,
            )
        else:
            log.warning(
                "could not send the %s mail %d (attempt %d of %d): %s; trying again later",
                row.purpose,
                row.id,
                attempt,
                limit,
                error,
            )
