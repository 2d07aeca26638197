"""Password hashing with argon2id, always off the event loop, in a bounded pool.

passlib parses, formats and judges the hashes (`needs_update`); libargon2 computes them in the
hash thread's own working block (argon2_blocks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from passlib.context import CryptContext
from werkzeug.security import check_password_hash

from .argon2_blocks import argon2_raw

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


class PasswordHasher:
    """Hashes and verifies passwords in a thread pool so the event loop never waits on argon2."""

    def __init__(self, memory_cost: int, time_cost: int, parallelism: int, workers: int) -> None:
        self._context = CryptContext(
            schemes=["argon2"],
            argon2__type="ID",
            argon2__memory_cost=memory_cost,
            argon2__rounds=time_cost,
            argon2__parallelism=parallelism,
        )
        size = workers or usable_cpus()
        self._pool = ThreadPoolExecutor(
            max_workers=size, thread_name_prefix="argon2", initializer=_yield_to_requests
        )
        # argon2-cffi releases the GIL; the semaphore bounds queued work so a login flood
        # waits in line instead of piling up threads or memory.
        self._slots = asyncio.Semaphore(size * 4)
        self._argon2 = self._context.handler("argon2")
        # Costs what a real verification costs and matches no password: a random digest.
        dummy = self._argon2(use_defaults=True)
        dummy.checksum = os.urandom(dummy.checksum_size)
        self._dummy_hash: str = dummy.to_string()

    async def hash(self, password: str) -> str:
        """Hash a password with the current argon2id parameters."""
        return await self._run(self._hash_sync, password)

    async def verify(self, password: str, stored: str) -> Verification:
        """Check a password against a stored hash (argon2 or werkzeug)."""
        return await self._run(self._verify_sync, password, stored)

    async def verify_dummy(self, password: str) -> None:
        """Spend what a real verification costs, for accounts that do not exist."""
        await self._run(self._verify_sync, password, self._dummy_hash)

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _verify_sync(self, password: str, stored: str) -> Verification:
        if stored.startswith(WERKZEUG_PREFIXES):
            return Verification(check_password_hash(stored, password), needs_update=True)
        try:
            ok = self._argon2_matches(password, stored)
        except (ValueError, TypeError, NotImplementedError):
            return Verification(False)
        return Verification(ok, ok and bool(self._context.needs_update(stored)))

    def _hash_sync(self, password: str) -> str:
        record = self._argon2(use_defaults=True)  # a fresh salt, the configured cost
        record.checksum = self._digest(password, record, record.checksum_size)
        return str(record.to_string())

    def _argon2_matches(self, password: str, stored: str) -> bool:
        record = self._argon2.from_string(stored)
        if record.data or not record.checksum:  # associated data, or no digest: never made here
            return False
        return hmac.compare_digest(
            self._digest(password, record, len(record.checksum)), record.checksum
        )

    @staticmethod
    def _digest(password: str, record: Any, hash_len: int) -> bytes:
        """argon2 of the password with the salt and cost of a passlib hash record."""
        return argon2_raw(
            password.encode(),
            record.salt,
            variant=record.type,
            time_cost=record.rounds,
            memory_cost=record.memory_cost,
            parallelism=record.parallelism,
            hash_len=hash_len,
            version=record.version,
        )

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
