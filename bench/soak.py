"""A bounded mixed soak against one pinned worker; prints its RSS over time and a plateau verdict.

    .venv/bin/python bench/soak.py                  # 15 minutes under `quart-auth-app serve`
    .venv/bin/python bench/soak.py --minutes 4 --server hypercorn
    .venv/bin/python bench/soak.py --minutes 4 --snapshots   # tracemalloc diffs, see below

The worker (one, pinned to the server CPU, access log on, throttling on as shipped with the
attempt limit raised so the client's one address is not refused) serves, at bounded rates from
clients on the other CPU: protected GETs (GET /dashboard, GET /me: wrk, each connection pausing
between requests), and from a Python client sessions that log in, refresh a few times and log
out, signups of new accounts, and failed logins. Every --sample-seconds the worker's RSS is read
from /proc; the verdict compares the last third of the run with the end: a plateau grows by
less than --plateau-mb there.

--snapshots serves `bench/soak_app.py` (the same app with tracemalloc on) under the server's own
command line (hypercorn's with hypercorn.toml), has the worker dump a snapshot at each sample
(SIGUSR1) and prints the allocation sites that grew most between the first third and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from run import BENCH, ROOT, Bench, bench_env, pinned, rss_mb, say, start_server, wrk_result

PASSWORD = "benchmark passphrase"  # as in bench/seed.py
PACED = BENCH / "lua" / "paced.lua"
# Protected GETs dominate as in production (wrk, paced: a Python client could not keep up); the
# rest keep the stores that grow with use busy: sessions, refresh families, new accounts,
# throttle counters. Starts a second of each kind, from the Python client:
# Each is one argon2id hash: together a few percent of a core, so that a busy host does not
# turn the soak into an overload (waiting requests are memory too; a sample shows them).
RATES = {"session": 1.0, "signup": 0.5, "failed_login": 0.25}
READ_RATE = 400.0
READ_CONNECTIONS = 8
REFRESHES_PER_SESSION = 3
IN_FLIGHT = 64  # per kind; past it a tick is skipped (counted), so load never piles up


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--sample-seconds", type=float, default=15.0)
    parser.add_argument(
        "--read-rate", type=float, default=READ_RATE, help="GETs a second (at most)"
    )
    parser.add_argument("--plateau-mb", type=float, default=2.0,
                        help="most growth over the last third that still counts as a plateau")  # fmt: skip
    parser.add_argument("--server", choices=["granian", "hypercorn"], default="granian")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--snapshots", action="store_true", help="tracemalloc diff in the worker")
    parser.add_argument("--plain", action="store_true", help="ACCELERATIONS=false")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the worker (e.g. MALLOC_ARENA_MAX=2)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "soak-latest.json")
    return parser.parse_args()


@dataclass
class Load:
    client: httpx.AsyncClient
    emails: list[str]
    counts: Counter[str] = field(default_factory=Counter)
    waiting: int = 0  # requests of the Python client not answered yet
    signups: itertools.count[int] = field(default_factory=itertools.count)

    def tally(self, kind: str, response: httpx.Response) -> None:
        self.counts[f"{kind} {response.status_code}"] += 1

    async def session(self) -> None:
        email = random.choice(self.emails)
        login = await self.client.post("/login", json={"email": email, "password": PASSWORD})
        self.tally("login", login)
        if login.status_code != 200:
            return
        pair = login.json()
        for _ in range(REFRESHES_PER_SESSION):
            answer = await self.client.post("/token/refresh",
                                            json={"refresh_token": pair["refresh_token"]})  # fmt: skip
            self.tally("refresh", answer)
            if answer.status_code != 200:
                return
            pair = answer.json()
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        self.tally("logout", await self.client.post("/logout", headers=headers))

    async def signup(self) -> None:
        n = next(self.signups)
        body = {"name": f"Soak {n}", "email": f"soak{n}.{os.getpid()}@bench.example",
                "password": PASSWORD}  # fmt: skip
        self.tally("signup", await self.client.post("/signup", json=body))

    async def failed_login(self) -> None:
        # A handful of addresses: the failure counters are per (email, address), kept a window.
        body = {"email": f"user{random.randrange(8)}@bench.example", "password": "wrong"}
        self.tally("failed_login", await self.client.post("/login", json=body))


async def paced(load: Load, kind: str, rate: float, until: float) -> None:
    """Start one `kind` request every 1/rate seconds until `until`, never more than IN_FLIGHT."""
    action = getattr(load, kind)
    running: set[asyncio.Task[None]] = set()
    interval, tick = 1.0 / rate, time.monotonic()
    while tick < until:
        if len(running) < IN_FLIGHT:
            task = asyncio.create_task(guarded(load, kind, action))
            running.add(task)
            task.add_done_callback(running.discard)
        else:
            load.counts[f"{kind} skipped"] += 1
        tick += interval
        behind = time.monotonic() - tick
        if behind > interval:  # a slow client skips ticks rather than bursting to catch up
            skipped = int(behind / interval)
            load.counts[f"{kind} skipped"] += skipped
            tick += skipped * interval
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
    if running:
        await asyncio.wait(running, timeout=30)


async def guarded(load: Load, kind: str, action: Any) -> None:
    load.waiting += 1
    try:
        await action()
    except httpx.HTTPError as exc:
        load.counts[f"{kind} {type(exc).__name__}"] += 1
    finally:
        load.waiting -= 1


class AccessLog:
    """Requests served so far: the worker's access log has one line per request."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.lines = path, 0, 0

    def count(self) -> int:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        self.lines += data.count(b"\n")
        return self.lines


async def sample(
    worker: int, args: argparse.Namespace, load: Load, until: float, work: Path
) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    start, log = time.monotonic(), AccessLog(work / "soak.log")
    while True:
        now = time.monotonic()
        requests = log.count()
        timeouts = sum(n for key, n in load.counts.items() if key.endswith("Timeout"))
        samples.append({"t": now - start, "rss_mb": rss_mb(worker), "requests": requests,
                        "waiting": load.waiting, "timeouts": timeouts})  # fmt: skip
        if args.snapshots:
            os.kill(worker, signal.SIGUSR1)  # the worker dumps work/snapshots/<n>.tracemalloc
        say(f"t={now - start:6.0f} s  RSS {samples[-1]['rss_mb']:6.1f} MB  {requests} log lines"
            f"  {load.waiting} waiting, {timeouts} timed out")  # fmt: skip
        if now >= until:
            return samples
        await asyncio.sleep(min(args.sample_seconds, max(0.0, until - now)))


async def drive(port: int, worker: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    lines = (work / "users.tsv").read_text().split("\n")
    emails = [line.split("\t")[0] for line in lines if line][:1000]
    limits = httpx.Limits(max_connections=4 * IN_FLIGHT, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                 timeout=30) as client:  # fmt: skip
        load = Load(client, emails)
        until = time.monotonic() + args.minutes * 60
        reads = reader(port, args, work)
        drivers = [paced(load, kind, rate, until) for kind, rate in RATES.items()]
        samples, *_ = await asyncio.gather(sample(worker, args, load, until, work), *drivers)
        read = await asyncio.to_thread(wrk_result, reads)
    return {"samples": samples, "counts": dict(sorted(load.counts.items())), "reads": read}


def reader(port: int, args: argparse.Namespace, work: Path) -> Any:
    """wrk for the whole soak: GET /dashboard and /me, each connection pausing between requests."""
    pause_ms = max(1, round(READ_CONNECTIONS * 1000 / args.read_rate))
    command = ["wrk", "-t", "1", "-c", str(READ_CONNECTIONS), "-d", f"{args.minutes * 60:.0f}s",
               "--timeout", "10s", "-s", str(PACED), f"http://127.0.0.1:{port}", "--",
               str(work / "users.tsv"), str(pause_ms)]  # fmt: skip
    return subprocess.Popen(pinned(args.client_cpu, command), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def verdict(samples: list[dict[str, Any]], plateau_mb: float) -> tuple[bool, str]:
    """Growth from the start of the last third to the end (medians of a few samples each)."""
    third = samples[len(samples) * 2 // 3 :]
    if len(third) < 4:
        return False, "too few samples for a verdict (run longer or sample more often)"
    k = max(2, len(third) // 4)
    first = sorted(s["rss_mb"] for s in third[:k])[k // 2]
    last = sorted(s["rss_mb"] for s in third[-k:])[k // 2]
    growth = last - first
    overall = samples[-1]["rss_mb"] - samples[0]["rss_mb"]
    text = (f"RSS {samples[0]['rss_mb']:.1f} -> {samples[-1]['rss_mb']:.1f} MB "
            f"({overall:+.1f}); last third {first:.1f} -> {last:.1f} MB ({growth:+.1f})")  # fmt: skip
    return growth < plateau_mb, text


def snapshot_diff(work: Path, samples: int) -> str:
    """The allocation sites that grew most from a third of the way through to the end."""
    files = sorted((work / "snapshots").glob("*.tracemalloc"), key=lambda p: int(p.stem))
    if len(files) < 3:
        return "no snapshots written (is the worker bench/soak_app.py?)"
    early = tracemalloc.Snapshot.load(str(files[len(files) // 3]))
    late = tracemalloc.Snapshot.load(str(files[-1]))
    stats = late.compare_to(early, "traceback")
    lines = [f"tracemalloc, snapshot {files[len(files) // 3].stem} -> {files[-1].stem} "
             f"(allocating frame first), all sites {sum(s.size_diff for s in stats) / 1024:+.0f} "
             "KiB:"]  # fmt: skip
    for stat in stats[:12]:
        innermost = list(stat.traceback)[::-1][:6]  # a Traceback runs from the oldest frame
        frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in innermost)
        lines.append(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {frames}")
    return "\n".join(lines)


def worker_command(args: argparse.Namespace) -> list[str]:
    if args.snapshots and args.server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "asgi", "--http", "1",
                "--workers", "1", "--host", "127.0.0.1", "--port", "{port}", "--access-log",
                "soak_app:app"]  # fmt: skip
    if args.snapshots:
        return [sys.executable, "-m", "hypercorn", "--config", str(ROOT / "hypercorn.toml"),
                "--workers", "1", "--bind", "127.0.0.1:{port}", "soak_app:app"]  # fmt: skip
    serve = str(Path(sys.executable).with_name("quart-auth-app"))
    return [serve, "serve", "--server", args.server, "--workers", "1",
            "--bind", "127.0.0.1:{port}"]  # fmt: skip


def main() -> None:
    args = parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = BENCH / "results" / f"soak-{stamp}"
    (work / "snapshots").mkdir(parents=True)
    env = {**bench_env(work, plain=args.plain), "RATE_LIMIT_ENABLED": "true",
           "AUTH_ATTEMPTS_PER_MINUTE": "1000000", "SOAK_SNAPSHOTS": str(work / "snapshots"),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{BENCH}"}  # fmt: skip
    env.update(item.split("=", 1) for item in args.env)
    bench = Bench(args, work, env)
    say(f"seeding {args.users} users into {work / 'app.db'}")
    bench.seed("users", str(args.users), str(work / "users.tsv"))
    # Tracing every allocation makes the worker's start (its imports) several times slower.
    server = start_server("soak", pinned(args.server_cpu, worker_command(args)), env, ROOT, work,
                          "/healthz", 300 if args.snapshots else 60)  # fmt: skip
    try:
        # The worker is the largest child (hypercorn's master also has a resource tracker).
        worker = max(server.worker_pids(), key=rss_mb)
        say(f"worker pid {worker}, {args.minutes:g} minutes, RSS every {args.sample_seconds:g} s")
        result = asyncio.run(_client_pinned(args, server.port, worker, work))
    finally:
        server.stop()
    plateau, text = verdict(result["samples"], args.plateau_mb)
    print("\n  minute   RSS MB   requests   waiting   timed out")
    for s in result["samples"]:
        print(f"  {s['t'] / 60:6.1f}   {s['rss_mb']:6.1f}   {s['requests']:8d}   "
              f"{s['waiting']:7d}   {s['timeouts']:9d}")  # fmt: skip
    if result["samples"][-1]["timeouts"]:
        print("  (requests timed out: the worker was overloaded, and what it still holds for "
              "clients that left is part of its RSS)")  # fmt: skip
    reads = result["reads"]
    print(
        f"\nprotected GETs (wrk): {reads['requests']} at {reads['rps']:.0f}/s, p99 "
        f"{reads['p99_ms']:.1f} ms, {reads['errors']} errors ({reads['non_2xx']} non-2xx)"
    )
    print("the rest (Python client):", json.dumps(result["counts"]))
    print(f"\n{text}: {'PLATEAU' if plateau else 'STILL GROWING'} "
          f"(plateau: under {args.plateau_mb:g} MB over the last third)")  # fmt: skip
    if args.snapshots:
        print("\n" + snapshot_diff(work, len(result["samples"])))
    output = {"when": stamp, "args": {k: str(v) for k, v in vars(args).items()}, **result,
              "verdict": text, "plateau": plateau}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(output, indent=2))
    print(f"results: {args.json}")


async def _client_pinned(args: argparse.Namespace, port: int, worker: int, work: Path) -> Any:
    if hasattr(os, "sched_setaffinity") and args.client_cpu:
        os.sched_setaffinity(0, {int(args.client_cpu)})  # the client stays off the server's CPU
    return await drive(port, worker, args, work)


if __name__ == "__main__":
    main()
