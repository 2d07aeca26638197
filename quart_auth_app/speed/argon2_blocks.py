"""argon2 computed in a working block that each hash thread keeps, instead of in malloc's heap.

Private names relied on (tests/speed/test_argon2_blocks.py fails when they change):
`_argon2_cffi_bindings` (ffi, lib: the C context and its allocation callbacks),
`argon2.low_level.core`, and passlib's argon2 hash records (`from_string`, `salt`, `checksum`,
`rounds`, `memory_cost`, `parallelism`, `type`, `version`, `data`, `to_string`).
Earns its place on the worker's memory: see docs/performance.md ("argon2 working blocks").

libargon2 mallocs its working memory (19 MiB at the default cost) for every hash and frees it
afterwards. glibc keeps a freed block that large in the heap, the event loop's own allocations
between two hashes settle in the hole, and the next hash's block extends the heap again: a
worker grew by ~40 MB during a login flood (bench/). Mapping the block afresh for every hash
would return it, but faulting 19 MiB back in costs a third of a login. So each hash thread
maps one block, once, and hands it to libargon2 through the allocation callbacks of its
context; libargon2 wipes the block before "freeing" it, as it does before free().
"""

from __future__ import annotations

import hmac
import mmap
import threading
from typing import Any

from _argon2_cffi_bindings import ffi, lib
from argon2.low_level import ARGON2_VERSION, Type, core, error_to_str
from passlib.context import CryptContext


class _ThreadBlock(threading.local):
    """The calling thread's working block and its C address (kept alive together)."""

    memory: mmap.mmap | None = None
    address: Any = None


_block = _ThreadBlock()


def _thread_block(size: int) -> Any:
    if _block.memory is None or len(_block.memory) < size:
        _block.address = None  # drop the old block's exported buffer before its mapping goes
        _block.memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        _block.address = ffi.from_buffer("uint8_t[]", _block.memory, require_writable=True)
    return _block.address


def _allocate(memory: Any, size: int) -> int:
    try:
        memory[0] = ffi.cast("uint8_t *", _thread_block(size))
    except (OSError, ValueError, MemoryError):
        return int(lib.ARGON2_MEMORY_ALLOCATION_ERROR)
    return int(lib.ARGON2_OK)


def _keep(memory: Any, size: int) -> None:
    """The block stays with its thread for the next hash (libargon2 has wiped it)."""


_ALLOCATE = ffi.callback(
    "int(uint8_t **, size_t)", _allocate, error=lib.ARGON2_MEMORY_ALLOCATION_ERROR
)
_KEEP = ffi.callback("void(uint8_t *, size_t)", _keep)


def argon2_raw(
    secret: bytes,
    salt: bytes,
    *,
    variant: str,
    time_cost: int,
    memory_cost: int,
    parallelism: int,
    hash_len: int,
    version: int = ARGON2_VERSION,
) -> bytes:
    """The raw argon2 digest, as argon2-cffi's hash_secret_raw gives it; ValueError if refused.

    Blocks the calling thread for the whole hash (the GIL is released meanwhile): call it from
    a hash thread, never from the event loop.
    """
    out = ffi.new("uint8_t[]", hash_len)
    password = ffi.new("uint8_t[]", secret)
    salt_bytes = ffi.new("uint8_t[]", salt)
    context = ffi.new(
        "argon2_context *",
        {
            "out": out,
            "outlen": hash_len,
            "pwd": password,
            "pwdlen": len(secret),
            "salt": salt_bytes,
            "saltlen": len(salt),
            "secret": ffi.NULL,
            "secretlen": 0,
            "ad": ffi.NULL,
            "adlen": 0,
            "t_cost": time_cost,
            "m_cost": memory_cost,
            "lanes": parallelism,
            "threads": parallelism,
            "version": version,
            "allocate_cbk": _ALLOCATE,
            "free_cbk": _KEEP,
            "flags": lib.ARGON2_DEFAULT_FLAGS,
        },
    )
    status = core(context, Type[variant.upper()].value)
    if status != lib.ARGON2_OK:
        raise ValueError(f"argon2: {error_to_str(status)}")
    return bytes(ffi.buffer(out, hash_len))


class BlockScheme:
    """passlib's argon2 hash format, computed by `argon2_raw` in the thread's working block."""

    def __init__(self, context: CryptContext) -> None:
        self._argon2 = context.handler("argon2")

    def hash(self, password: str) -> str:
        record = self._argon2(use_defaults=True)  # a fresh salt, the configured cost
        record.checksum = _digest(password, record, record.checksum_size)
        return str(record.to_string())

    def matches(self, password: str, stored: str) -> bool:
        record = self._argon2.from_string(stored)
        if record.data or not record.checksum:  # associated data, or no digest: never made here
            return False
        return hmac.compare_digest(_digest(password, record, len(record.checksum)), record.checksum)


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
