"""argon2 in a per-thread working block: the same digests as argon2-cffi, the same hash strings
as passlib, and one block per hash thread, reused."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from argon2.low_level import Type, hash_secret_raw
from passlib.context import CryptContext

from quart_auth_app.passwords import PasslibScheme, PasswordHasher
from quart_auth_app.speed import argon2_blocks
from quart_auth_app.speed.argon2_blocks import BlockScheme, argon2_raw

SALT = bytes(range(16))


@pytest.mark.parametrize(
    ("variant", "version", "time_cost", "memory_cost", "parallelism", "hash_len", "secret"),
    [
        ("id", 0x13, 2, 1024, 1, 32, b"correct horse"),
        ("id", 0x13, 1, 2048, 4, 16, "pässwörd".encode()),
        ("i", 0x10, 3, 256, 2, 24, b""),
        ("d", 0x13, 1, 64, 1, 64, b"x" * 1000),
    ],
)
def test_digest_matches_argon2_cffi(
    variant: str,
    version: int,
    time_cost: int,
    memory_cost: int,
    parallelism: int,
    hash_len: int,
    secret: bytes,
) -> None:
    ours = argon2_raw(
        secret,
        SALT,
        variant=variant,
        time_cost=time_cost,
        memory_cost=memory_cost,
        parallelism=parallelism,
        hash_len=hash_len,
        version=version,
    )
    theirs = hash_secret_raw(
        secret, SALT, time_cost, memory_cost, parallelism, hash_len, Type[variant.upper()], version
    )
    assert ours == theirs


COST: dict[str, Any] = {
    "variant": "id",
    "time_cost": 1,
    "memory_cost": 512,
    "parallelism": 1,
    "hash_len": 16,
}


@pytest.mark.parametrize(
    ("salt", "overrides"),
    [(b"short", {}), (SALT, {"memory_cost": 4}), (SALT, {"time_cost": 0})],
)
def test_parameters_libargon2_refuses_raise_value_error(
    salt: bytes, overrides: dict[str, int]
) -> None:
    with pytest.raises(ValueError, match="argon2: "):
        argon2_raw(b"pw", salt, **{**COST, **overrides})


def test_a_block_that_cannot_be_mapped_is_an_error_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_memory(size: int) -> Any:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(argon2_blocks, "_thread_block", no_memory)
    with pytest.raises(ValueError, match="alloc"):
        argon2_raw(b"pw", SALT, **COST)


def test_each_thread_keeps_one_block_and_grows_it_only_for_a_larger_cost() -> None:
    seen: list[tuple[int, int]] = []

    def hash_three_times() -> None:
        for memory_cost in (512, 256, 1024):
            argon2_raw(b"pw", SALT, **{**COST, "memory_cost": memory_cost})
            block = argon2_blocks._block.memory
            assert block is not None
            seen.append((id(block), len(block)))

    thread = threading.Thread(target=hash_three_times)
    thread.start()
    thread.join()
    assert seen[0] == seen[1]  # a smaller cost reuses the block
    assert seen[0][1] == 512 * 1024
    assert seen[2][1] == 1024 * 1024


@pytest.fixture(params=[PasslibScheme, BlockScheme], ids=["passlib", "blocks"])
def hasher(request: pytest.FixtureRequest) -> PasswordHasher:
    """The core's hasher with passlib's own scheme, and with speed/'s working blocks."""
    return PasswordHasher(
        memory_cost=1024, time_cost=2, parallelism=1, workers=1, scheme=request.param
    )


def passlib_context(memory_cost: int = 1024, time_cost: int = 2) -> CryptContext:
    return CryptContext(
        schemes=["argon2"],
        argon2__type="ID",
        argon2__memory_cost=memory_cost,
        argon2__rounds=time_cost,
        argon2__parallelism=1,
    )


async def test_hashes_interoperate_with_passlib_both_ways(hasher: PasswordHasher) -> None:
    ours = await hasher.hash("correct horse battery")
    assert ours.startswith("$argon2id$v=19$m=1024,t=2,p=1$")
    assert passlib_context().verify("correct horse battery", ours)
    assert not passlib_context().verify("wrong horse battery", ours)

    theirs = passlib_context().hash("correct horse battery")
    assert (await hasher.verify("correct horse battery", theirs)).ok
    assert not (await hasher.verify("wrong horse battery", theirs)).ok
    hasher.close()


async def test_every_hash_has_its_own_salt(hasher: PasswordHasher) -> None:
    first, second = await hasher.hash("same"), await hasher.hash("same")
    assert first != second
    assert (await hasher.verify("same", first)).ok and (await hasher.verify("same", second)).ok
    hasher.close()


async def test_weaker_hashes_verify_and_ask_for_an_upgrade(hasher: PasswordHasher) -> None:
    weaker = passlib_context(memory_cost=512, time_cost=1).hash("pw")
    result = await hasher.verify("pw", weaker)
    assert result.ok and result.needs_update
    hasher.close()


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "$argon2id$v=19$m=1024,t=2,p=1$c2FsdHNhbHQ",  # no digest
        "$argon2id$v=19$m=1024,t=2,p=1,data=YWQ$c2FsdHNhbHRzYWx0$" + "A" * 43,
        "$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43,  # cost libargon2 refuses
        "$argon2id$v=19$m=1024,t=2,p=1,keyid=AA$c2FsdHNhbHRzYWx0$" + "A" * 43,
        "$2b$12$" + "a" * 53,  # bcrypt: not a scheme we accept
    ],
)
async def test_malformed_or_foreign_hashes_never_match(hasher: PasswordHasher, stored: str) -> None:
    assert (await hasher.verify("pw", stored)).ok is False
    hasher.close()


async def test_the_dummy_hash_matches_no_password_at_the_real_cost(
    hasher: PasswordHasher,
) -> None:
    dummy = hasher._dummy_hash.result()
    assert dummy.startswith("$argon2id$v=19$m=1024,t=2,p=1$")
    assert not (await hasher.verify("dummy password for unknown accounts", dummy)).ok
    await hasher.verify_dummy(os.urandom(8).hex())
    hasher.close()
