"""CPU time of each thread of a running worker over a window, per request served in it.

    python bench/thread_cpu.py WORKER_PID SECONDS [REQUESTS]

Run it while wrk drives the worker (`bench/run.py --keep` prints the worker pids); give the
number of requests wrk reported for the same window to get microseconds per request. The
event loop is the thread whose id is the pid; on one pinned worker the busiest other thread is
the hash thread, the rest are the SQLite threads. Accounting is the kernel's (tick-sampled).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def stat_seconds(stat: Path) -> tuple[float, float]:
    """(user, system) CPU seconds from a /proc stat file (a process's or a thread's)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def thread_seconds(pid: int) -> dict[int, tuple[float, float]]:
    """(user, system) CPU seconds of each live thread of the process."""
    seconds: dict[int, tuple[float, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            seconds[int(task.name)] = stat_seconds(task / "stat")
        except OSError:  # the thread ended meanwhile
            continue
    return seconds


def main(pid: int, window: float, requests: int) -> None:
    before = thread_seconds(pid)
    time.sleep(window)
    after = thread_seconds(pid)
    unit, scale = ("us/request", 1e6 / requests) if requests else ("ms", 1e3)
    rows = []
    for tid, (user, system) in after.items():
        user0, system0 = before.get(tid, (0.0, 0.0))
        rows.append(((user - user0 + system - system0) * scale, (system - system0) * scale, tid))
    for total, system, tid in sorted(rows, reverse=True):
        if total > 0:
            name = "event loop" if tid == pid else f"thread {tid}"
            print(f"{name:>16}: {total:9.0f} {unit} (system {system:.0f})")
    print(f"{'all threads':>16}: {sum(row[0] for row in rows):9.0f} {unit}")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) == 4 else 0)
