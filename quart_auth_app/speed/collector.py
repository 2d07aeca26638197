"""Process-wide memory settings: the cyclic garbage collector.

Relies on what CPython's `gc.set_threshold` means for its generational collector (3.11-3.13);
an incremental collector gives the numbers another meaning (tests/speed/test_collector.py
checks the interpreter's generations are the ones tuned here).
"""

from __future__ import annotations

import gc

# Container allocations between young-generation collections (CPython's default is 700).
# Above the ~25,000 live objects of 256 requests in flight, so steady keep-alive traffic,
# which leaves no cyclic garbage (see routing.py), triggers no collection at all.
YOUNG_COLLECTION_THRESHOLD = 50_000
# Every 2nd young collection also collects the middle generation, every 2nd of those the
# oldest: garbage that reached the oldest generation (a long-lived connection's, once it
# closes) is freed after ~200,000 allocations, where CPython's defaults wait 70,000. With
# the defaults' 10 and 10, it waited 5,000,000 and a worker grew past 160 MB in bench/.
OLDER_COLLECTION_THRESHOLD = 1


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
