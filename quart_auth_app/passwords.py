"""Password hashing with argon2id through passlib, always off the event loop, in a bounded pool.

passlib formats, parses and judges the hashes (`needs_update`). Computing them is a
`HashScheme`: passlib's own by default; services.py may install speed/'s instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from passlib.context import CryptContext
from werkzeug.security import check_password_hash

# Hashes made by the Flask tutorial (werkzeug) are checked with werkzeug itself, then upgraded.
WERKZEUG_PREFIXES = ("pbkdf2:", "scrypt:")

R = TypeVar("R")
# Hash threads run this much "nicer" than the event loop: under a login flood the kernel gives
# the CPU to serving requests first, and hashing gets what is left (never nothing: CFS still
# gives a nice-10 thread about a tenth of a contended CPU).
HASH_THREAD_NICENESS = 10


@dataclass(frozen=True)
class Verification:
    """The outcome of checking a password: whether it matched, and whether to re-hash it."""

    ok: bool
    needs_update: bool = False


class HashScheme(Protocol):
    """Computes and checks argon2 hashes in the calling (hash) thread."""

    def hash(self, password: str) -> str:
        """A new hash with a fresh salt and the configured cost."""
        ...

    def matches(self, password: str, stored: str) -> bool:
        """Whether the password matches; ValueError or TypeError for a malformed hash."""
        ...


class PasslibScheme:
    """passlib's public API: `hash` and `verify` of the context."""

    def __init__(self, context: CryptContext) -> None:
        self._context = context

    def hash(self, password: str) -> str:
        return str(self._context.hash(password))

    def matches(self, password: str, stored: str) -> bool:
        return bool(self._context.verify(password, stored))


SchemeFactory = Callable[[CryptContext], HashScheme]


def argon2_context(memory_cost: int, time_cost: int, parallelism: int) -> CryptContext:
    """The passlib context for argon2id with the configured cost."""
    return CryptContext(
        schemes=["argon2"],
        argon2__type="ID",
        argon2__memory_cost=memory_cost,
        argon2__rounds=time_cost,
        argon2__parallelism=parallelism,
    )


class PasswordHasher:
    """Hashes and verifies passwords in a thread pool so the event loop never waits on argon2."""

    def __init__(
        self,
        memory_cost: int,
        time_cost: int,
        parallelism: int,
        workers: int,
        scheme: SchemeFactory = PasslibScheme,
    ) -> None:
        self._context = argon2_context(memory_cost, time_cost, parallelism)
        self._scheme = scheme(self._context)
        size = workers or usable_cpus()
        self._pool = ThreadPoolExecutor(
            max_workers=size, thread_name_prefix="argon2", initializer=_yield_to_requests
        )
        # argon2-cffi releases the GIL; the semaphore bounds queued work so a login flood
        # waits in line instead of piling up threads or memory.
        self._slots = asyncio.Semaphore(size * 4)
        # Costs what a real verification costs and matches nothing anyone knows; hashed in the
        # pool as it starts, so no request waits for it and none pays for it twice.
        self._dummy_hash: Future[str] = self._pool.submit(
            self._scheme.hash, secrets.token_urlsafe(32)
        )

    async def hash(self, password: str) -> str:
        """Hash a password with the current argon2id parameters."""
        return await self._run(self._hash_sync, password)

    async def verify(self, password: str, stored: str) -> Verification:
        """Check a password against a stored hash (argon2 or werkzeug)."""
        return await self._run(self._verify_sync, password, stored)

    async def verify_dummy(self, password: str) -> None:
        """Spend what a real verification costs, for accounts that do not exist."""
        await self._run(self._verify_dummy_sync, password)

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _verify_sync(self, password: str, stored: str) -> Verification:
        if stored.startswith(WERKZEUG_PREFIXES):
            return Verification(check_password_hash(stored, password), needs_update=True)
        try:
            ok = self._scheme.matches(password, stored)
        except (ValueError, TypeError, NotImplementedError):
            return Verification(False)
        return Verification(ok, ok and bool(self._context.needs_update(stored)))

    def _verify_dummy_sync(self, password: str) -> None:
        self._verify_sync(password, self._dummy_hash.result())

    def _hash_sync(self, password: str) -> str:
        return self._scheme.hash(password)

    async def _run(self, func: Callable[..., R], *args: str) -> R:
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)


def usable_cpus() -> int:
    """CPUs this process may run on (a worker pinned with taskset gets one hash thread)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _yield_to_requests() -> None:
    with contextlib.suppress(AttributeError, OSError):  # per-thread niceness: Linux only
        thread = threading.get_native_id()
        niceness = os.getpriority(os.PRIO_PROCESS, thread) + HASH_THREAD_NICENESS
        os.setpriority(os.PRIO_PROCESS, thread, min(niceness, 19))
