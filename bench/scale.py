"""PostgreSQL against SQLite on the protected route, one worker and scaled out (issue 22).

    .venv/bin/python bench/scale.py              # 3 alternating rounds x 10 s at c = 64
    .venv/bin/python bench/scale.py --quick      # 1 round of 4 s
    .venv/bin/python bench/scale.py --plain      # adds PostgreSQL with ACCELERATIONS=false

One worker per cell pinned to one CPU, wrk on the other, rounds alternating between the cells,
as bench/run.py measures. PostgreSQL is the machine's shared server (unpinned) with Redis for
revocations, the configuration the README gives for scale-out; SQLite is the embedded default.
Then the scaled-out cells: `serve --workers 2`, and two instances of one worker each, on
PostgreSQL + Redis and on SQLite, unpinned. Figures go to docs/performance.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from run import (  # bench/ is the script's directory
    BENCH,
    PASSWORD,
    ROOT,
    SECRET,
    Bench,
    pinned,
    say,
    start_server,
    wrk,
    wrk_result,
)
from thread_cpu import stat_seconds

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_scale"
DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
SERVE = str(Path(sys.executable).with_name("quart-auth-app"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--servers", default="granian,hypercorn")
    parser.add_argument("--database-url", default=DEFAULT_PG, help="a database this may reset")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--plain", action="store_true", help="also PostgreSQL without speed/")
    parser.add_argument("--skip-scale-out", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 round of 4 s")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 4
    return args


class StoreCounters:
    """What the stores did during a run: PostgreSQL transactions and rows, Redis commands and bytes.

    Read from pg_stat_database (this benchmark's own database) and Redis INFO (the whole
    server: run this on a machine where nothing else uses that Redis, or the figures include it).
    """

    def __init__(self, database_url: str, redis_url: str) -> None:
        self.database_url, self.redis_url = database_url, redis_url

    def snapshot(self) -> dict[str, float]:
        return {
            **self._postgres(),
            **self._redis(),
            "pg_cpu_us": process_cpu("postgres") * 1e6,
            "redis_cpu_us": process_cpu("redis-server") * 1e6,
        }

    def _postgres(self) -> dict[str, float]:
        from sqlalchemy import text
        from sqlalchemy.engine import make_url
        from sqlalchemy.ext.asyncio import create_async_engine

        name = make_url(self.database_url).database

        async def read() -> dict[str, float]:
            engine = create_async_engine(self.database_url)
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
                row = (
                    await conn.execute(
                        text(
                            "SELECT xact_commit + xact_rollback, tup_returned, tup_fetched, "
                            "tup_inserted + tup_updated + tup_deleted "
                            "FROM pg_stat_database WHERE datname = :name"
                        ),
                        {"name": name},
                    )
                ).one()
            await engine.dispose()
            keys = ("pg_transactions", "pg_rows_scanned", "pg_rows_fetched", "pg_rows_written")
            return dict(zip(keys, (float(v) for v in row), strict=True))

        return asyncio.run(read())

    def _redis(self) -> dict[str, float]:
        if not self.redis_url:
            return {}
        import redis

        client = redis.Redis.from_url(self.redis_url)
        stats, commands = client.info("stats"), client.info("commandstats")
        client.close()
        return {
            "redis_commands": float(sum(v["calls"] for v in commands.values())),
            "redis_bytes_in": float(stats["total_net_input_bytes"]),
            "redis_bytes_out": float(stats["total_net_output_bytes"]),
        }


def process_cpu(name: str) -> float:
    """CPU seconds used so far by the live processes of that name (the servers' own)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if stat.read_text().split("(", 1)[1].split(")", 1)[0] == name:
                total += sum(stat_seconds(stat))
    return total


def per_request(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    # The snapshot's own queries (one transaction, a few commands) are a rounding error here.
    return {key: (after[key] - before[key]) / max(count, 1) for key in before}


def reset_postgres(url: str) -> None:
    """Drop and recreate the benchmark database (never the shared `test` one)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    name = make_url(url).database
    if name in (None, "", "test", "postgres"):
        raise SystemExit(f"--database-url must name a database of its own, not {name!r}")

    async def recreate() -> None:
        admin = create_async_engine(
            make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT"
        )
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        await admin.dispose()

    asyncio.run(recreate())


def backend_env(base: dict[str, str], backend: str, args: argparse.Namespace) -> dict[str, str]:
    env = dict(base)
    if backend.startswith("postgresql"):
        env.update(DATABASE_URL=args.database_url, REDIS_URL=args.redis_url)
    if backend == "postgresql-plain":
        env["ACCELERATIONS"] = "false"
    return env


def seed(env: dict[str, str], work: Path, backend: str, users: int) -> Path:
    tokens = work / f"tokens-{backend}.tsv"
    command = [sys.executable, str(BENCH / "seed.py"), "users", str(users), str(tokens)]
    subprocess.run(command, env=env, cwd=ROOT, check=True)
    return tokens


def serve(server: str, workers: int) -> list[str]:
    return [SERVE, "serve", "--server", server, "--workers", str(workers),
            "--bind", "127.0.0.1:{port}"]  # fmt: skip


def one_worker_cells(args: argparse.Namespace, backends: list[str]) -> list[tuple[str, str, str]]:
    """(cell name, server, backend) of the pinned one-worker comparison."""
    return [
        (f"{server}/{backend}", server, backend)
        for server in args.servers.split(",")
        for backend in backends
    ]


@contextlib.contextmanager
def stopping(bench: Bench) -> Iterator[None]:
    try:
        yield
    finally:
        for server in bench.servers.values():
            server.stop()


def one_worker(bench: Bench, cells: list[tuple[str, str, str]], tokens: dict[str, Path]) -> None:
    args = bench.args
    for name, server, backend in cells:
        env = backend_env(bench.env, backend, args)
        command = pinned(args.server_cpu, serve(server, 1))
        bench.servers[name] = start_server(name.replace("/", "-"), command, env, ROOT,
                                           bench.work, "/healthz")  # fmt: skip
    counters = StoreCounters(args.database_url, args.redis_url)
    for round_no in range(1, args.rounds + 1):
        for name, _, backend in cells:
            script = ["bearer", str(tokens[backend]), "/dashboard"]
            before = counters.snapshot() if backend.startswith("postgresql") else None
            result = bench.run_wrk(name, args.concurrency, script)
            if before is not None:
                result["costs"] = per_request(before, counters.snapshot(), result["requests"])
            bench.record(name, round_no, result)
            say(f"round {round_no} {name}: {result['rps']:.0f} req/s, p99 "
                f"{result['p99_ms']:.1f} ms, {result['cpu_us']:.0f} us CPU, "
                f"{result['errors']} errors")  # fmt: skip


def logins(bench: Bench, tokens: dict[str, Path]) -> None:
    """POST /login on one pinned granian worker per backend: the rate and what each costs."""
    args = bench.args
    counters = StoreCounters(args.database_url, args.redis_url)
    for backend in ("sqlite", "postgresql"):
        name = f"login/{backend}"
        env = backend_env(bench.env, backend, args)
        command = pinned(args.server_cpu, serve("granian", 1))
        bench.servers[name] = start_server(f"login-{backend}", command, env, ROOT, bench.work,
                                           "/healthz")  # fmt: skip
        before = counters.snapshot() if backend == "postgresql" else None
        result = bench.run_wrk(name, 16, ["login", str(tokens[backend]), PASSWORD])
        if before is not None:
            result["costs"] = per_request(before, counters.snapshot(), result["requests"])
        bench.record(name, 1, result)
        bench.servers.pop(name).stop()
        say(f"{name}: {result['rps']:.0f} logins/s, {result['cpu_us']:.0f} us CPU each")


def scale_out(bench: Bench, backends: list[str], tokens: dict[str, Path]) -> None:
    """2 workers in one `serve`, and 2 instances of 1 worker, each driven by wrk, unpinned."""
    args = bench.args
    for backend in backends:
        env = backend_env(bench.env, backend, args)
        script = ["bearer", str(tokens[backend]), "/dashboard"]
        two = start_server(f"2w-{backend}", serve("granian", 2), env, ROOT, bench.work, "/healthz")
        bench.servers[f"2 workers/{backend}"] = two
        bench.settle()
        result = bench.run_wrk(f"2 workers/{backend}", args.concurrency, script, cpu="")
        bench.record(f"2 workers/{backend}", 1, result)
        two.stop()
        del bench.servers[f"2 workers/{backend}"]
        instances = [
            start_server(f"i{n}-{backend}", serve("granian", 1), env, ROOT, bench.work, "/healthz")
            for n in (1, 2)
        ]
        bench.settle()
        runs = [
            wrk(server.port, args.concurrency // 2, args.duration, script, cpu="")
            for server in instances
        ]
        results = [wrk_result(run) for run in runs]
        combined = {
            "rps": sum(r["rps"] for r in results),
            "p99_ms": max(r["p99_ms"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "requests": sum(r["requests"] for r in results),
        }
        bench.record(f"2 instances/{backend}", 1, combined)
        for server in instances:
            server.stop()
        say(f"{backend}: 2 workers {result['rps']:.0f} req/s, 2 instances "
            f"{combined['rps']:.0f} req/s")  # fmt: skip


def summary(bench: Bench) -> None:
    rows: dict[str, dict[str, float]] = {}
    for name, results in bench.results.items():
        rows[name] = {
            key: statistics.median(r[key] for r in results) for key in ("rps", "p99_ms", "errors")
        }
        if "cpu_us" in results[0]:
            rows[name]["cpu_us"] = statistics.median(r["cpu_us"] for r in results)
    print("\n| cell | req/s | p99 ms | server CPU µs/req | errors | vs SQLite (rate, p99) |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        place, _, backend = name.rpartition("/")
        base = rows.get(f"{place}/sqlite")
        ratio = (
            f"{row['rps'] / base['rps']:.2f}, {row['p99_ms'] / base['p99_ms']:.2f}"
            if base and backend != "sqlite"
            else ""
        )
        cpu = f"{row['cpu_us']:.0f}" if "cpu_us" in row else ""
        print(f"| {name} | {row['rps']:.0f} | {row['p99_ms']:.1f} | {cpu} | "
              f"{row['errors']:.0f} | {ratio} |")  # fmt: skip
    for server in bench.args.servers.split(","):
        pg, lite = rows.get(f"{server}/postgresql"), rows.get(f"{server}/sqlite")
        if pg and lite:
            rate_ok = pg["rps"] >= 0.8 * lite["rps"]
            tail_ok = pg["p99_ms"] <= 2 * lite["p99_ms"]
            print(f"target {server}: PostgreSQL rate {pg['rps'] / lite['rps']:.2f} x SQLite "
                  f"({'met' if rate_ok else 'NOT met'}, >= 0.8), p99 "
                  f"{pg['p99_ms'] / lite['p99_ms']:.2f} x ({'met' if tail_ok else 'NOT met'}, "
                  f"<= 2), errors {pg['errors']:.0f}")  # fmt: skip


def costs(bench: Bench) -> None:
    """Store operations per request of the PostgreSQL cells (medians over rounds)."""
    print("\n| cell | PG transactions | PG rows scanned | PG rows fetched | PG rows written "
          "| PG CPU µs | Redis commands | Redis bytes in | Redis bytes out | Redis CPU µs |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, results in bench.results.items():
        measured = [r["costs"] for r in results if "costs" in r]
        if not measured:
            continue
        row = {key: statistics.median(m[key] for m in measured) for key in measured[0]}
        cells = [f"{row.get(key, 0):.3g}" for key in (
            "pg_transactions", "pg_rows_scanned", "pg_rows_fetched", "pg_rows_written",
            "pg_cpu_us", "redis_commands", "redis_bytes_in", "redis_bytes_out",
            "redis_cpu_us")]  # fmt: skip
        print(f"| {name} per request | " + " | ".join(cells) + " |")


def main() -> None:
    args = parse_args()
    backends = ["sqlite", "postgresql"] + (["postgresql-plain"] if args.plain else [])
    with tempfile.TemporaryDirectory(prefix="qaa-scale-") as tmp:
        work = Path(tmp)
        base = {**os.environ, "SECRET_KEY": SECRET, "INSTANCE_PATH": str(work / "instance"),
                "DATABASE_URL": f"sqlite+aiosqlite:///{work / 'app.db'}",
                "RATE_LIMIT_ENABLED": "false", "PYTHONPATH": str(ROOT)}  # fmt: skip
        bench = Bench(args=args, work=work, env=base)
        reset_postgres(args.database_url)
        tokens: dict[str, Path] = {}
        for backend in ("sqlite", "postgresql"):
            say(f"seeding {args.users} users on {backend}")
            tokens[backend] = seed(backend_env(base, backend, args), work, backend, args.users)
        tokens["postgresql-plain"] = tokens["postgresql"]
        with stopping(bench):
            one_worker(bench, one_worker_cells(args, backends), tokens)
            for name in list(bench.servers):
                bench.servers.pop(name).stop()
            logins(bench, tokens)
            if not args.skip_scale_out:
                scale_out(bench, ["sqlite", "postgresql"], tokens)
        summary(bench)
        costs(bench)


if __name__ == "__main__":
    main()
