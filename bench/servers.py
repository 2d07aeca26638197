"""Every supported server side by side, one worker each on one core, in one run (issue 21).

    .venv/bin/python bench/servers.py              # 3 alternating rounds x 10 s at c = 64
    .venv/bin/python bench/servers.py --quick      # 1 round x 3 s
    .venv/bin/python bench/servers.py --access-log-cost   # also each server with its log off,
                                                          # and hypercorn's own access atoms

Cells, each one worker pinned to the server CPU (wrk on the other), all up at once and measured
in turn, the order reversed every other round:
- the app under `quart-auth-app serve --server X --workers 1` for every X it supports, with the
  access log on as shipped: GET /dashboard with bearer tokens;
- the Flask tutorial (bench/tutorial_app.py) on one gunicorn sync worker: GET /dashboard with
  its cookie token — the per-core reference of the targets;
- FastAPI Users' own example app (examples/sqlalchemy of its sdist, unchanged) on uvicorn with
  its access log: GET /authenticated-route with a JWT bearer from its /auth/jwt/login.

The comparisons' venvs (bench/.venv-tutorial, bench/.venv-fastapi-users) are created from PyPI
when missing. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from run import (  # bench/ is the script's directory
    BENCH,
    ROOT,
    Bench,
    Server,
    bench_env,
    median,
    pinned,
    say,
    start_server,
    start_tutorial,
    venv_python,
)

from quart_auth_app.serve import DEFAULT_SERVER, SERVERS

FASTAPI_USERS_VENV = BENCH / ".venv-fastapi-users"
# The example's own requirements.txt (uvicorn[standard]: httptools and uvloop).
FASTAPI_USERS_PACKAGES = ["fastapi", "fastapi-users[sqlalchemy]", "uvicorn[standard]", "aiosqlite"]
FASTAPI_USERS_ACCOUNTS = 64
FASTAPI_USERS_PASSWORD = "benchmark passphrase"
# The targets of issue 21: the protected route per core against the tutorial's, access log on.
FASTEST_TARGET = 3.5
HYPERCORN_TARGET = 1.9


@dataclass(frozen=True)
class Cell:
    name: str
    label: str
    script: list[str]  # requests.lua arguments


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median taken)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--users", type=int, default=10_000, help="users in the app's database")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--plain", action="store_true", help="ACCELERATIONS=false for the app")
    parser.add_argument("--access-log-cost", action="store_true",
                        help="also every server of the app with --no-access-log")  # fmt: skip
    parser.add_argument("--skip-fastapi-users", action="store_true")
    parser.add_argument("--servers", default=",".join(sorted(SERVERS)),
                        help="which of serve's servers (the tutorial always runs)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "servers-latest.json")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 3.0
    return args


def fastapi_users_example(python: Path) -> Path:
    """examples/sqlalchemy from the sdist of the installed fastapi-users, unpacked once."""
    example = FASTAPI_USERS_VENV / "example"
    if (example / "app" / "app.py").exists():
        return example
    version = subprocess.run(
        [str(python), "-c", "import fastapi_users; print(fastapi_users.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    sdists = FASTAPI_USERS_VENV / "sdist"
    subprocess.run([str(python), "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                    ":all:", "-d", str(sdists), f"fastapi-users=={version}"], check=True)  # fmt: skip
    archive = next(sdists.glob("fastapi_users-*.tar.gz"))
    prefix = f"{archive.name.removesuffix('.tar.gz')}/examples/sqlalchemy/"
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(prefix):
                target = example / member.name.removeprefix(prefix)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
    return example


def post(port: int, path: str, body: bytes, content_type: str) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                     headers={"Content-Type": content_type})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http://127.0.0.1
        answer: dict[str, Any] = json.load(response)
        return answer


def start_fastapi_users(bench: Bench) -> Server:
    """The example unchanged on uvicorn (its DATABASE_URL is ./test.db: a fresh one per run);
    accounts registered and logged in through its own routes, bearer tokens to a file."""
    python = venv_python(FASTAPI_USERS_VENV, FASTAPI_USERS_PACKAGES)
    example = fastapi_users_example(python)
    (example / "test.db").unlink(missing_ok=True)
    uvicorn = [str(FASTAPI_USERS_VENV / "bin" / "uvicorn"), "app.app:app",
               "--host", "127.0.0.1", "--port", "{port}"]  # fmt: skip
    server = start_server("fastapi_users", pinned(bench.args.server_cpu, uvicorn),
                          {"PATH": bench.env["PATH"]}, example, bench.work, "/docs")  # fmt: skip
    lines = []
    for i in range(FASTAPI_USERS_ACCOUNTS):
        email = f"user{i}@bench.example"
        account = {"email": email, "password": FASTAPI_USERS_PASSWORD}
        post(server.port, "/auth/register", json.dumps(account).encode(), "application/json")
        form = urllib.parse.urlencode({"username": email, "password": FASTAPI_USERS_PASSWORD})
        token = post(server.port, "/auth/jwt/login", form.encode(),
                     "application/x-www-form-urlencoded")["access_token"]  # fmt: skip
        lines.append(f"{email}\t{token}")
    (bench.work / "fastapi_users_tokens.tsv").write_text("\n".join(lines) + "\n")
    return server


def start_cells(bench: Bench) -> list[Cell]:
    args, work, env = bench.args, bench.work, bench.env
    users = str(work / "users.tsv")
    cells = []
    serve = str(Path(sys.executable).with_name("quart-auth-app"))
    variants = [("", [])] + ([("_nolog", ["--no-access-log"])] if args.access_log_cost else [])
    chosen = [s for s in args.servers.split(",") if s in SERVERS]
    for server in sorted(chosen, key=lambda s: (s != DEFAULT_SERVER, s)):
        for suffix, extra in variants:
            name = f"{server}{suffix}"
            command = [serve, "serve", "--server", server, "--workers", "1",
                       "--bind", "127.0.0.1:{port}", *extra]  # fmt: skip
            bench.servers[name] = start_server(name, pinned(args.server_cpu, command), env, ROOT,
                                               work, "/healthz")  # fmt: skip
            label = f"app, {server}" + (", no access log" if suffix else "")
            cells.append(Cell(name, label, ["bearer", users, "/dashboard"]))
    if args.access_log_cost and "hypercorn" in chosen:
        # hypercorn's own command line with hypercorn.toml: the same settings and line, built
        # by hypercorn's AccessLogAtoms rather than serve's QuickAccessLogger.
        command = [sys.executable, "-m", "hypercorn", "--config", str(ROOT / "hypercorn.toml"),
                   "--workers", "1", "--bind", "127.0.0.1:{port}", "quart_auth_app.asgi:app"]  # fmt: skip
        bench.servers["hypercorn_toml"] = start_server("hypercorn_toml",
                                                       pinned(args.server_cpu, command), env,
                                                       ROOT, work, "/healthz")  # fmt: skip
        cells.append(Cell("hypercorn_toml", "app, hypercorn --config hypercorn.toml",
                          ["bearer", users, "/dashboard"]))  # fmt: skip
    bench.servers["tutorial"] = start_tutorial(bench, 1, args.server_cpu)
    tutorial_tokens = str(work / "tutorial_tokens.txt")
    cells.append(Cell("tutorial", "Flask tutorial, gunicorn sync",
                      ["cookie", tutorial_tokens, "/dashboard"]))  # fmt: skip
    if not args.skip_fastapi_users:
        bench.servers["fastapi_users"] = start_fastapi_users(bench)
        tokens = str(work / "fastapi_users_tokens.tsv")
        cells.append(Cell("fastapi_users", "FastAPI Users example, uvicorn",
                          ["bearer", tokens, "/authenticated-route"]))  # fmt: skip
    return cells


def run_rounds(bench: Bench, cells: list[Cell]) -> None:
    c = bench.args.concurrency
    for r in range(bench.args.rounds):
        order = cells if r % 2 == 0 else cells[::-1]  # drift over a round cancels out
        for cell in order:
            say(f"round {r + 1}: {cell.label}, c={c}")
            result = bench.run_wrk(cell.name, c, cell.script)
            if result["non_2xx"] or result["errors"]:
                say(f"  {cell.name}: {result['errors']} errors ({result['non_2xx']} non-2xx)")
            bench.record(cell.name, r, result)


def summarise(bench: Bench, cells: list[Cell]) -> dict[str, Any]:
    res = bench.results
    tutorial = {x["round"]: x for x in res["tutorial"]}
    rows = []
    for cell in cells:
        runs = res[cell.name]
        rows.append({
            "cell": cell.name, "label": cell.label,
            "rps": median([x["rps"] for x in runs]),
            "p50_ms": median([x["p50_ms"] for x in runs]),
            "p99_ms": median([x["p99_ms"] for x in runs]),
            "cpu_us": median([x["cpu_us"] for x in runs]),
            # Ratios inside a round: the host's drift between rounds moves both sides.
            "vs_tutorial": median([x["rps"] / tutorial[x["round"]]["rps"] for x in runs]),
            # Per core by CPU time per request: what a busy host moves least (the tutorial's
            # sync worker sleeps and wakes several times a request, so a contended CPU cuts
            # its rate far more than its CPU cost).
            "cpu_vs_tutorial": median([tutorial[x["round"]]["cpu_us"] / x["cpu_us"]
                                       for x in runs]),
            "errors": sum(x["errors"] for x in runs),
        })  # fmt: skip
    logged = {row["cell"]: row for row in rows if row["cell"] in SERVERS}
    fastest = max(logged.values(), key=lambda row: row["vs_tutorial"])
    targets = [
        (f"fastest supported server ({fastest['cell']}) / tutorial, per core",
         fastest["vs_tutorial"], fastest["cpu_vs_tutorial"], FASTEST_TARGET),
    ]  # fmt: skip
    if "hypercorn" in logged:
        hypercorn = logged["hypercorn"]
        targets.append(("hypercorn / tutorial, per core", hypercorn["vs_tutorial"],
                        hypercorn["cpu_vs_tutorial"], HYPERCORN_TARGET))  # fmt: skip
    return {"rows": rows, "targets": targets}


def print_summary(summary: dict[str, Any], note: str) -> str:
    lines = [f"Measured {note}.", "",
             "| cell | req/s | p50 ms | p99 ms | CPU µs/req | x tutorial (req/s) | "
             "x tutorial (CPU/req) | errors |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in summary["rows"]:
        lines.append(f"| {row['label']} | {row['rps']:.0f} | {row['p50_ms']:.1f} | "
                     f"{row['p99_ms']:.1f} | {row['cpu_us']:.0f} | {row['vs_tutorial']:.2f}x | "
                     f"{row['cpu_vs_tutorial']:.2f}x | {row['errors']} |")  # fmt: skip
    lines += ["", "| target | by req/s | by CPU per request | goal | |", "|---|---|---|---|---|"]
    for what, rate, cpu, goal in summary["targets"]:
        verdict = {(True, True): "met", (False, False): "NOT met"}.get(
            (rate >= goal, cpu >= goal), f"met by {'req/s' if rate >= goal else 'CPU'} only"
        )
        lines.append(f"| {what} | {rate:.2f}x | {cpu:.2f}x | >= {goal}x | {verdict} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    return text


def main() -> None:
    args = parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: sudo apt-get install -y wrk (Debian/Ubuntu)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = BENCH / "results" / f"servers-{stamp}"
    work.mkdir(parents=True)
    bench = Bench(args, work, bench_env(work, plain=args.plain))
    say(f"seeding {args.users} users into {work / 'app.db'}")
    bench.seed("users", str(args.users), str(work / "users.tsv"))
    try:
        cells = start_cells(bench)
        for name, server in bench.servers.items():
            say(f"{name}: port {server.port}, workers {server.worker_pids()}")
        run_rounds(bench, cells)
    finally:
        for server in bench.servers.values():
            server.stop()
    time.sleep(0.1)
    note = (f"{stamp}, {args.rounds} round(s) x {args.duration:.0f} s at c = {args.concurrency}, "
            f"one worker each on CPU {args.server_cpu}, wrk on CPU {args.client_cpu}")  # fmt: skip
    summary = summarise(bench, cells)
    table = print_summary(summary, note)
    output = {"when": stamp, "conditions": note, "summary": summary, "runs": bench.results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(output, indent=2, default=str))
    args.json.with_name(args.json.stem + "-table.md").write_text(table)
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
