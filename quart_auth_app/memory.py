"""Process-wide memory settings: the malloc arenas and the cyclic garbage collector."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys

M_ARENA_MAX = -8  # glibc mallopt parameter
MALLOC_ARENAS = 1
# Container allocations between young-generation collections (CPython's default is 700).
# Above the ~25,000 live objects of 256 requests in flight, so steady keep-alive traffic,
# which leaves no cyclic garbage (see routing.py), triggers no collection at all.
YOUNG_COLLECTION_THRESHOLD = 50_000
# Every 2nd young collection also collects the middle generation, every 2nd of those the
# oldest: garbage that reached the oldest generation (a long-lived connection's, once it
# closes) is freed after ~200,000 allocations, where CPython's defaults wait 70,000. With
# the defaults' 10 and 10, it waited 5,000,000 and a worker grew past 160 MB in bench/.
OLDER_COLLECTION_THRESHOLD = 1


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


def tune_collector() -> None:
    """Keep the cyclic garbage collector off the request path; call once start-up is done.

    Every collection walks the young objects, and those of the requests in flight are all
    alive: at CPython's default threshold a worker with 256 connections spent 7 % of its CPU
    collecting and promoted in-flight objects far enough to trigger full collections (bench/:
    p99 at c256 4.9x the p99 at c64). Freezing keeps the start-up objects (modules, metadata,
    compiled SQL) out of every later full collection. Garbage still arrives from clients that
    close their connections (~35 objects each inside hypercorn); it is collected every ~1,400
    such connections in one pause of ~30 ms.
    """
    gc.freeze()
    gc.set_threshold(
        YOUNG_COLLECTION_THRESHOLD, OLDER_COLLECTION_THRESHOLD, OLDER_COLLECTION_THRESHOLD
    )
