"""Summarise a `py-spy record -f raw` profile: share of samples per library (inclusive).

py-spy record -p WORKER_PID -d 12 -r 200 -f raw -o profile.txt --nonblocking
python bench/profile_summary.py profile.txt
"""

from __future__ import annotations

import sys
from collections import Counter

GROUPS = {
    "sqlalchemy": ("sqlalchemy/",),
    "greenlet bridge": ("greenlet", "_concurrency_py3k", "await_only", "greenlet_spawn"),
    "aiosqlite / sqlite3": ("aiosqlite/", "sqlite3"),
    "jwt": ("jwt/",),
    "quart": ("quart/",),
    "quart_schema": ("quart_schema/",),
    "werkzeug": ("werkzeug/",),
    "hypercorn": ("hypercorn/",),
    "h11": ("h11/",),
    "logging": ("logging/",),
    "asyncio": ("asyncio/",),
    "argon2 / passlib": ("argon2", "passlib/"),
    "quart_auth_app": ("quart_auth_app/",),
}


# Threads parked waiting for work: py-spy --nonblocking cannot always tell they are idle.
IDLE_LEAVES = ("aiosqlite/core.py:59)", "concurrent/futures/thread.py:81)", "threading.py:331)")


def main(path: str) -> None:
    totals: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    samples = 0
    with open(path) as handle:
        lines = handle.readlines()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        n = int(count)
        if stack.endswith(IDLE_LEAVES):
            continue
        samples += n
        for group, needles in GROUPS.items():
            if any(needle in stack for needle in needles):
                totals[group] += n
        leaf[stack.split(";")[-1]] += n
    print(f"{samples} samples")
    for group, n in totals.most_common():
        print(f"  {group:<22}{n / samples:>6.1%}")
    print("top leaf frames:")
    for frame, n in leaf.most_common(15):
        print(f"  {n / samples:>6.1%}  {frame[:110]}")


if __name__ == "__main__":
    main(sys.argv[1])
