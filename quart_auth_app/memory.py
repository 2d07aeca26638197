"""Process-wide allocator settings that keep one worker's resident memory small."""

from __future__ import annotations

import contextlib
import ctypes
import sys

M_ARENA_MAX = -8  # glibc mallopt parameter
MALLOC_ARENAS = 1


def tune_malloc() -> None:
    """Let glibc keep one malloc arena for all threads; call before any worker thread starts.

    Each thread that allocates (hash pool, SQLite connections) otherwise gets an arena of its
    own, and every arena keeps what it freed: after a login flood each held its own 19 MiB
    argon2id working block. With one arena that block is reused by every hash (bench/: peak
    RSS 169 -> 148 MB). A fixed mmap threshold would return it instead, but re-faulting
    19 MiB per login cost a third of the login rate.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).mallopt(M_ARENA_MAX, MALLOC_ARENAS)
