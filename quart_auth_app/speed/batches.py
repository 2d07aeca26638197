"""Checks that arrive together, answered by one read: what both accelerated readers share.

A request asks; if no read is under way one starts with everything waiting at that moment, and
whatever arrives while it runs goes in the next. Nothing is cached: each answer comes from a
read that began after its question was asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Key = TypeVar("Key")
Answer = TypeVar("Answer")


class Batcher(Generic[Key, Answer]):
    """Answers questions in batches with `read`, which returns one answer per key, in order."""

    def __init__(self, read: Callable[[list[Key]], Awaitable[Sequence[Answer]]]) -> None:
        self._read = read
        self._waiting: list[tuple[Key, asyncio.Future[Answer]]] = []
        self._reading: asyncio.Task[None] | None = None

    async def ask(self, key: Key) -> Answer:
        """The answer for `key`, from the next read that starts."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._reading is None:
            self._reading = asyncio.create_task(self._read_batches())
        return await future

    async def _read_batches(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._answer(batch)
        finally:
            self._reading = None

    async def _answer(self, batch: list[tuple[Key, asyncio.Future[Answer]]]) -> None:
        try:
            answers = await self._read([key for key, _ in batch])
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            # A request cancelled while waiting has a cancelled future.
            if not future.done():
                future.set_result(answer)
