"""Process-wide allocator settings that keep one worker's resident memory small."""

from __future__ import annotations

import contextlib
import ctypes
import sys

M_ARENA_MAX = -8  # glibc mallopt parameter
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    """Let glibc keep at most two malloc arenas, before any worker thread starts.

    Each thread that allocates (hash pool, one per SQLite connection) otherwise gets an arena
    of its own, and every arena keeps the memory it freed: about 6 MB per worker after a
    login flood, measured with bench/run.py. Other C libraries are left alone.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).mallopt(M_ARENA_MAX, MALLOC_ARENAS)
