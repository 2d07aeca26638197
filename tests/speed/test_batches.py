"""speed/batches.py: checks waiting together share one read; each gets its own answer."""

from __future__ import annotations

import asyncio

import pytest

from quart_auth_app.speed.batches import Batcher


class Reads:
    """A read that records its batches and can be held open."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def __call__(self, keys: list[int]) -> list[int]:
        self.batches.append(keys)
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [key * 10 for key in keys]


async def test_questions_asked_together_share_one_read_and_keep_their_answers() -> None:
    reads = Reads()
    batcher: Batcher[int, int] = Batcher(reads)
    answers = await asyncio.gather(*(batcher.ask(key) for key in range(5)))
    assert answers == [0, 10, 20, 30, 40]
    assert reads.batches == [[0, 1, 2, 3, 4]]


async def test_questions_asked_during_a_read_go_in_the_next_one() -> None:
    reads = Reads()
    reads.gate.clear()
    batcher: Batcher[int, int] = Batcher(reads)
    first = asyncio.ensure_future(batcher.ask(1))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(batcher.ask(key)) for key in (2, 3)]
    await asyncio.sleep(0)
    reads.gate.set()
    assert await first == 10 and [await f for f in later] == [20, 30]
    assert reads.batches == [[1], [2, 3]]


async def test_a_failed_read_fails_every_question_in_it_and_the_next_read_runs() -> None:
    reads = Reads()
    reads.fail = ConnectionError("gone")
    batcher: Batcher[int, int] = Batcher(reads)
    results = await asyncio.gather(batcher.ask(1), batcher.ask(2), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    reads.fail = None
    assert await batcher.ask(3) == 30


async def test_a_cancelled_question_does_not_disturb_the_others() -> None:
    reads = Reads()
    reads.gate.clear()
    batcher: Batcher[int, int] = Batcher(reads)
    leaving = asyncio.ensure_future(batcher.ask(1))
    staying = asyncio.ensure_future(batcher.ask(2))
    await asyncio.sleep(0)
    leaving.cancel()
    reads.gate.set()
    assert await staying == 20
    with pytest.raises(asyncio.CancelledError):
        await leaving
