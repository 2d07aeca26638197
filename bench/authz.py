"""What authorization costs on the protected route (issue 18): roles, a role gate, a PAT.

    .venv/bin/python bench/authz.py --before ../old     # a checkout of the code before roles
    .venv/bin/python bench/authz.py --quick

One granian worker per cell pinned to one CPU, wrk on the other, rounds alternating, c = 64:
- before:     GET /dashboard on the `--before` checkout (no roles, no is_active in the read)
- dashboard:  GET /dashboard now (the live-session read also reads roles and is_active)
- role route: GET /reports, token_required(roles=["auditor"]) (bench/authz_app.py), beside
  GET /dashboard on the same server, so the ratio is the role check alone
- PAT:        GET /dashboard with a personal access token (one indexed read by digest)
SQLite, 10,000 users; every user of the current database holds `auditor`.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from run import BENCH, ROOT, SECRET, Bench, pinned, say, start_server


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="checkout (with its .venv) of the old code")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1 round of 4 s")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 4
    return args


def environment(work: Path, name: str) -> dict[str, str]:
    return {**os.environ, "SECRET_KEY": SECRET, "INSTANCE_PATH": str(work / f"instance-{name}"),
            "DATABASE_URL": f"sqlite+aiosqlite:///{work / f'{name}.db'}",
            "RATE_LIMIT_ENABLED": "false"}  # fmt: skip


def seed(python: Path, root: Path, env: dict[str, str], *command: str) -> None:
    subprocess.run([str(python), str(root / "bench" / "seed.py"), *command], env=env, cwd=root,
                   check=True)  # fmt: skip


def granian(python: Path, target: str) -> list[str]:
    """granian as `serve` runs it (ASGI, HTTP/1, access log on), for an app of the bench's own."""
    return [str(python), "-m", "granian", "--interface", "asgi", "--http", "1",
            "--host", "127.0.0.1", "--port", "{port}", "--workers", "1", "--access-log",
            target]  # fmt: skip


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="qaa-authz-") as tmp:
        work = Path(tmp)
        bench = Bench(args=args, work=work, env=environment(work, "now"))
        now_env = environment(work, "now")
        say(f"seeding {args.users} users")
        seed(Path(sys.executable), ROOT, now_env, "users", str(args.users), str(work / "users.tsv"))
        seed(Path(sys.executable), ROOT, now_env, "pats", "256", str(work / "pats.tsv"))
        with sqlite3.connect(work / "now.db") as db:
            db.execute("INSERT INTO user_roles (user_id, role) SELECT id, 'auditor' FROM users")
        serve = [str(Path(sys.executable).with_name("quart-auth-app")), "serve", "--workers", "1",
                 "--bind", "127.0.0.1:{port}"]  # fmt: skip
        cells: list[tuple[str, str, str, str]] = [
            ("dashboard", "now", "users.tsv", "/dashboard"),
            ("PAT", "now", "pats.tsv", "/dashboard"),
            ("gated: dashboard", "gated", "users.tsv", "/dashboard"),
            ("gated: role route", "gated", "users.tsv", "/reports"),
        ]
        bench.servers["now"] = start_server("now", pinned(args.server_cpu, serve), now_env, ROOT,
                                            work, "/healthz")  # fmt: skip
        app_env = {**now_env, "PYTHONPATH": f"{ROOT}:{BENCH}"}
        bench.servers["gated"] = start_server(
            "gated", pinned(args.server_cpu, granian(Path(sys.executable), "authz_app:app")),
            app_env, BENCH, work, "/healthz")  # fmt: skip
        if args.before is not None:
            before = args.before.resolve()
            old_env = environment(work, "before")
            old_python = before / ".venv" / "bin" / "python"
            seed(old_python, before, old_env, "users", str(args.users), str(work / "old.tsv"))
            old_serve = [str(before / ".venv" / "bin" / "quart-auth-app"), *serve[1:]]
            bench.servers["before"] = start_server("before", pinned(args.server_cpu, old_serve),
                                                   old_env, before, work, "/healthz")  # fmt: skip
            cells.insert(0, ("before", "before", "old.tsv", "/dashboard"))
        try:
            for round_no in range(1, args.rounds + 1):
                for name, server, tokens, path in cells:
                    script = ["bearer", str(work / tokens), path]
                    result = bench.record(name, round_no, bench.run_wrk(server, 64, script))
                    say(f"round {round_no} {name}: {result['rps']:.0f} req/s, p99 "
                        f"{result['p99_ms']:.1f} ms, {result['cpu_us']:.0f} us CPU, "
                        f"{result['errors']} errors, {result['non_2xx']} non-2xx")  # fmt: skip
        finally:
            for running in bench.servers.values():
                running.stop()
    report(bench)


def report(bench: Bench) -> None:
    rows = {
        name: {key: statistics.median(r[key] for r in results)
               for key in ("rps", "p99_ms", "cpu_us", "errors", "non_2xx")}
        for name, results in bench.results.items()
    }  # fmt: skip

    def ratio(a: str, b: str) -> str:
        pairs = zip(bench.results[a], bench.results[b], strict=True)
        return f"{statistics.median(x['rps'] / y['rps'] for x, y in pairs):.3f}"

    print("\n| cell | req/s | p99 ms | CPU µs/req | errors | non-2xx |\n|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['rps']:.0f} | {row['p99_ms']:.1f} | {row['cpu_us']:.0f} | "
              f"{row['errors']:.0f} | {row['non_2xx']:.0f} |")  # fmt: skip
    print(f"\nrole route / dashboard on the same server (target >= 0.95): "
          f"{ratio('gated: role route', 'gated: dashboard')}")  # fmt: skip
    print(f"PAT / JWT on /dashboard: {ratio('PAT', 'dashboard')}")
    if "before" in rows:
        print(f"dashboard now / before roles (target >= 0.95): {ratio('dashboard', 'before')}")


if __name__ == "__main__":
    main()
