"""Benchmark quart_auth_app under hypercorn (or granian) with wrk; check the six targets of issue 9.

    .venv/bin/python bench/run.py            # full run: 3 rounds x 10 s, c = 16, 64, 256
    .venv/bin/python bench/run.py --quick    # one short round, to try things
    .venv/bin/python bench/run.py --server granian   # the same under `quart-auth-app serve`

Servers run pinned to one CPU (taskset, when available), wrk on another. Every figure is the
median of alternating rounds; ratios are taken inside one round, so a noisy machine shifts the
absolute numbers more than the ratios. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from thread_cpu import stat_seconds  # bench/ is the script's directory

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LUA = BENCH / "lua" / "requests.lua"
TUTORIAL_VENV = BENCH / ".venv-tutorial"
TUTORIAL_PACKAGES = ["flask", "flask-sqlalchemy", "gunicorn", "pyjwt"]
SECRET = "benchmark-secret-key-0123456789abcdefghijklmnop"
PASSWORD = "benchmark passphrase"  # as in bench/seed.py
WRK_THREADS = 2
# Every run starts on idle servers: wrk stops mid-request, and what its closed connections left
# in flight (256 requests at c = 256, seconds of work for logins) would otherwise be served
# during the next run, and at c = 256 that leftover alone is over 1 % of a run's requests.
IDLE_PROBE_SECONDS = 0.25
IDLE_CPU_SHARE = 0.1  # below this share of one CPU over a probe, a server counts as idle
SETTLE_LIMIT_SECONDS = 15.0
# Then a short run at the same concurrency warms the server (its caches, the database pages in
# the OS page cache) after serving other scenarios; the measured run follows once it settles.
WARMUP_SECONDS = 2.0
MEMORY_LIMIT_MB = 150

ARGON2_SETTINGS = [  # (memory KiB, time cost, parallelism): OWASP's list, then a "strong" one
    (19_456, 2, 1),
    (12_288, 3, 1),
    (47_104, 1, 1),
    (65_536, 3, 4),
]

ARGON2_RATE = """
import sys, time
from passlib.context import CryptContext
m, t, p, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ctx = CryptContext(schemes=["argon2"], argon2__type="ID", argon2__memory_cost=m,
                   argon2__rounds=t, argon2__parallelism=p)
stored = ctx.hash("benchmark passphrase")
done, start, cpu = 0, time.perf_counter(), time.process_time()
while time.perf_counter() - start < seconds:
    ctx.verify("benchmark passphrase", stored)
    done += 1
print(done, time.perf_counter() - start, time.process_time() - cpu)
"""
# Target 2 compares two rates that cannot be measured at once. On a shared host the hash rate
# itself moves by +-10 % from one 5 s window to the next (neighbours' memory traffic), so each
# round alternates short slices of the raw rate and of POST /login and compares the sums.
LOGIN_SLICES = 4
LOGIN_SLICE_SECONDS = 3
# Target 4 compares two tails, so the same holds: the 10 s runs at c64 and c256 lie a minute
# apart in a round, and a round where the host slowed for one of them read 4.3x. Each round
# also alternates short slices of /dashboard at c64 and c256 and takes the p99 ratio per pair.
TAIL_SLICES = 4
TAIL_SLICE_SECONDS = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median taken)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--concurrency", default="16,64,256", help="comma-separated connections")
    parser.add_argument("--login-concurrency", type=int, default=16)
    parser.add_argument("--flood-concurrency", type=int, default=16)
    parser.add_argument("--users", type=int, default=10_000, help="users in the database")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s at c=64,256")
    parser.add_argument("--skip-tutorial", action="store_true", help="no Flask comparison")
    parser.add_argument("--argon2-table", action="store_true", help="rate per argon2 setting")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "latest.json")
    parser.add_argument("--chart", type=Path, default=BENCH / "results" / "latest.png")
    parser.add_argument("--worker-class", default="", help="override hypercorn.toml's loop")
    parser.add_argument("--server", choices=["hypercorn", "granian"], default="hypercorn",
                        help="granian: the app under `quart-auth-app serve`, the bare route "
                        "under granian alike")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="leave servers up (for py-spy)")
    parser.add_argument("--plain", action="store_true",
                        help="ACCELERATIONS=false: the app (and the ceiling) without speed/")  # fmt: skip
    parser.add_argument("--scenarios", choices=["all", "login"], default="all",
                        help="login: only argon2 rate, POST /login and the flood pair (2, 3)")  # fmt: skip
    args = parser.parse_args()
    if args.scenarios == "login":
        args.skip_tutorial = True  # targets 2 and 3 need neither the tutorial nor 2 workers
    if args.quick:
        args.rounds, args.duration, args.concurrency = 1, 3.0, "64,256"
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if 64 not in args.concurrency:
        parser.error("--concurrency must include 64 (the targets are stated at c=64)")
    return args


# ---------------------------------------------------------------- processes


def pinned(cpu: str, command: list[str]) -> list[str]:
    """Prefix a command with taskset when the machine has it."""
    return ["taskset", "-c", cpu, *command] if shutil.which("taskset") and cpu else command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """One server process (hypercorn or gunicorn) with its port and log."""

    name: str
    port: int
    process: subprocess.Popen[bytes]

    def worker_pids(self) -> list[int]:
        """The server's child processes (hypercorn, granian and gunicorn fork workers), or the
        process itself when it serves alone (uvicorn without --workers)."""
        pids: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                pids += [int(p) for p in (task / "children").read_text().split()]
        return pids or [self.process.pid]

    def cpu_seconds(self) -> float:
        """CPU time the workers have used: per request, a figure a busy machine barely moves."""
        total = 0.0
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                total += sum(stat_seconds(Path(f"/proc/{pid}/stat")))
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_server(
    name: str,
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    logs: Path,
    probe: str,
    start_seconds: float = 60,
) -> Server:
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    log = (logs / f"{name}.log").open("wb")
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(name, port, process)
    deadline = time.monotonic() + start_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited at start; see {logs / f'{name}.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=2):
                return server
        except urllib.error.HTTPError:
            return server  # any HTTP answer means it is serving
        except OSError:
            pass
        time.sleep(0.3)
    server.stop()
    raise SystemExit(f"{name} did not answer {probe} within {start_seconds:.0f} s")


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class MemoryWatch(threading.Thread):
    """Samples the resident memory of a server's workers twice a second; keeps the peak."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server, self.peak, self.last = server, 0.0, 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            self.last = max((rss_mb(pid) for pid in self.server.worker_pids()), default=0.0)
            self.peak = max(self.peak, self.last)


# ---------------------------------------------------------------- wrk


def wrk(
    port: int,
    connections: int,
    duration: float,
    script_args: list[str],
    *,
    cpu: str,
    timeout: float = 2.0,
) -> subprocess.Popen[str]:
    threads = min(WRK_THREADS, connections)
    command = [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:.0f}s",
        "--timeout", f"{timeout:.0f}s", "-s", str(LUA), f"http://127.0.0.1:{port}",
        "--", script_args[0], str(threads), *script_args[1:],
    ]  # fmt: skip
    return subprocess.Popen(pinned(cpu, command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


def wrk_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    output, _ = process.communicate()
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            raw = json.loads(line.removeprefix("BENCH_JSON "))
            seconds = raw["duration_us"] / 1e6
            errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
            return {
                "rps": raw["requests"] / seconds,
                "requests": raw["requests"],
                "seconds": seconds,
                "p50_ms": raw["p50_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000,
                "max_ms": raw["max_us"] / 1000,
                "errors": errors,
                "timeouts": raw["timeout"],
                "non_2xx": raw["status"],
            }
    raise RuntimeError(f"wrk gave no summary:\n{output}")


# ---------------------------------------------------------------- the run


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    env: dict[str, str]
    servers: dict[str, Server] = field(default_factory=dict)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    app_requests: int = 0
    refresh_estimate: float = 3000.0

    def record(self, key: str, round_no: int, result: dict[str, Any]) -> dict[str, Any]:
        result["round"] = round_no
        self.results.setdefault(key, []).append(result)
        return result

    def run_wrk(
        self,
        server: str,
        conc: int,
        script: list[str],
        *,
        settle: bool = True,
        warmup: bool = True,
        duration: float | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """One measured wrk run; settle=False when another load is meant to run alongside."""
        cpu = kw.pop("cpu", self.args.client_cpu)
        # Refresh tokens are single-use: the pool has none to spare for a warm-up.
        if warmup and script[0] != "refresh":
            if settle:
                self.settle()
            warm = wrk(self.servers[server].port, conc, WARMUP_SECONDS, script, cpu=cpu, **kw)
            self.app_requests += wrk_result(warm)["requests"] if server == "app" else 0
        if settle:
            self.settle()
        before = self.servers[server].cpu_seconds()
        seconds = duration or self.args.duration
        result = wrk_result(wrk(self.servers[server].port, conc, seconds, script, cpu=cpu, **kw))
        used = self.servers[server].cpu_seconds() - before
        result["cpu_us"] = used * 1e6 / max(result["requests"], 1)
        if server == "app":
            self.app_requests += result["requests"]
        return result

    def settle(self) -> None:
        """Wait until every server has finished what earlier runs left in flight."""
        deadline = time.monotonic() + SETTLE_LIMIT_SECONDS
        last = sum(server.cpu_seconds() for server in self.servers.values())
        while time.monotonic() < deadline:
            time.sleep(IDLE_PROBE_SECONDS)
            now = sum(server.cpu_seconds() for server in self.servers.values())
            if now - last < IDLE_PROBE_SECONDS * IDLE_CPU_SHARE:
                return
            last = now
        say(f"servers still busy after {SETTLE_LIMIT_SECONDS:.0f} s; measuring anyway")

    def seed(self, *command: str) -> None:
        subprocess.run(
            pinned(self.args.client_cpu, [sys.executable, str(BENCH / "seed.py"), *command]),
            env=self.env, cwd=ROOT, check=True,
        )  # fmt: skip

    def argon2_verify(self, m: int, t: int, p: int, seconds: float) -> tuple[int, float, float]:
        """(verifications, wall seconds, CPU seconds) of one process on the server CPU."""
        command = [sys.executable, "-c", ARGON2_RATE, str(m), str(t), str(p), str(seconds)]
        out = subprocess.run(pinned(self.args.server_cpu, command), capture_output=True, text=True,
                             check=True, env=self.env)  # fmt: skip
        done, wall, cpu = out.stdout.split()
        return int(done), float(wall), float(cpu)

    def one_round(self, r: int) -> None:
        users = str(self.work / "users.tsv")
        if self.args.scenarios == "login":
            self.login_runs(r, users)
            return
        for c in self.args.concurrency:
            say(f"round {r + 1}: c={c}: bare, /dashboard (JWT, PAT), /me, /token/refresh")
            bare = self.record(f"bare@{c}", r, self.run_wrk("bare", c, ["plain", "/bare"]))
            # dashboard_pat: the same route, authenticated by personal access tokens.
            for name, tokens, path in (
                ("dashboard", users, "/dashboard"),
                ("dashboard_pat", str(self.work / "pats.tsv"), "/dashboard"),
                ("me", users, "/me"),
            ):
                result = self.run_wrk("app", c, ["bearer", tokens, path])
                result["ratio"] = result["rps"] / bare["rps"]
                result["cpu_ratio"] = bare["cpu_us"] / result["cpu_us"]
                self.record(f"{name}@{c}", r, result)
            self.record(f"refresh@{c}", r, self.refresh_run(c, bare["rps"]))
        if 256 in self.args.concurrency:
            say(f"round {r + 1}: /dashboard tails, c=64 and c=256 in alternating slices")
            self.record("tail_pairs@256", r, self.tail_slices(["bearer", users, "/dashboard"]))
        self.login_runs(r, users)
        if not self.args.skip_tutorial:
            say(f"round {r + 1}: machine-wide, shipped hypercorn.toml vs tutorial on gunicorn")
            for name in ("machine", "tutorial"):
                script = ["bearer", users, "/dashboard"]
                if name == "tutorial":
                    script = ["cookie", str(self.work / "tutorial_tokens.txt"), "/dashboard"]
                self.record(f"{name}@64", r, self.run_wrk(name, 64, script, cpu=""))

    def refresh_run(self, c: int, ceiling: float) -> dict[str, Any]:
        needed = int(self.refresh_estimate * self.args.duration * 1.5) + 1000
        pool = self.work / "refresh.txt"
        self.seed("refresh", str(needed), str(pool))
        result = self.run_wrk("app", c, ["refresh", str(pool)])
        result["ratio"] = result["rps"] / ceiling
        result["pool"] = needed
        self.refresh_estimate = max(self.refresh_estimate, result["rps"])
        return result

    def login_runs(self, r: int, users: str) -> None:
        say(f"round {r + 1}: argon2 verify rate, POST /login, /dashboard under a login flood")
        raw, login = self.login_slices(self.argon2_params(), ["login", users, PASSWORD])
        self.record("argon2", r, raw)
        login["ratio_to_argon2"] = login["rps"] / raw["rps"]
        # On a shared machine the rates move with other load; CPU per request moves less.
        login["cpu_ratio"] = raw["cpu_us"] / login["cpu_us"]
        self.record(f"login@{self.args.login_concurrency}", r, login)
        quiet = self.run_wrk("app", 64, ["bearer", users, "/dashboard"])
        self.settle()
        flood = wrk(self.servers["app"].port, self.args.flood_concurrency,
                    self.args.duration + WARMUP_SECONDS + 3, ["login", users, PASSWORD],
                    cpu=self.args.client_cpu, timeout=30)  # fmt: skip
        time.sleep(1.5)  # let the flood fill the hash pool first
        loaded = self.run_wrk("app", 64, ["bearer", users, "/dashboard"], settle=False)
        flood_result = wrk_result(flood)
        self.app_requests += flood_result["requests"]
        loaded["ratio_to_unloaded"] = loaded["rps"] / quiet["rps"]
        loaded["flood"] = flood_result
        self.record("dashboard_quiet@64", r, quiet)
        self.record("dashboard_flood@64", r, loaded)

    def login_slices(
        self, params: tuple[int, int, int], script: list[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The raw verify rate and POST /login, alternating LOGIN_SLICES times, each summed."""
        verified, raw_wall, raw_cpu, slices = 0, 0.0, 0.0, []
        for index in range(LOGIN_SLICES):
            self.settle()  # the raw rate, too, is measured on an idle CPU
            done, wall, cpu = self.argon2_verify(*params, LOGIN_SLICE_SECONDS)
            verified, raw_wall, raw_cpu = verified + done, raw_wall + wall, raw_cpu + cpu
            result = self.run_wrk("app", self.args.login_concurrency, script, warmup=index == 0,
                                  duration=LOGIN_SLICE_SECONDS, timeout=30)  # fmt: skip
            result["raw_rps"] = done / wall
            slices.append(result)
        requests = sum(x["requests"] for x in slices)
        raw = {"rps": verified / raw_wall, "cpu_us": raw_cpu * 1e6 / verified, "params": params}
        login = {
            "rps": requests / sum(x["seconds"] for x in slices),
            "requests": requests,
            "cpu_us": sum(x["cpu_us"] * x["requests"] for x in slices) / max(requests, 1),
            "p50_ms": median([x["p50_ms"] for x in slices]),
            "p99_ms": max(x["p99_ms"] for x in slices),
            "errors": sum(x["errors"] for x in slices),
            "slices": slices,
        }
        return raw, login

    def tail_slices(self, script: list[str]) -> dict[str, Any]:
        """p99 at c256 over p99 at c64 in TAIL_SLICES adjacent pairs of short runs (target 4)."""
        pairs = []
        for index in range(TAIL_SLICES):
            low, high = (self.run_wrk("app", c, script, warmup=index == 0,
                                      duration=TAIL_SLICE_SECONDS) for c in (64, 256))  # fmt: skip
            pairs.append({"c64": low, "c256": high, "ratio": high["p99_ms"] / low["p99_ms"]})
        return {
            "rps": median([x["c256"]["rps"] for x in pairs]),
            "p50_ms": median([x["c256"]["p50_ms"] for x in pairs]),
            "p99_ms": median([x["c256"]["p99_ms"] for x in pairs]),
            "errors": sum(x["c64"]["errors"] + x["c256"]["errors"] for x in pairs),
            "pairs": pairs,
        }

    def argon2_params(self) -> tuple[int, int, int]:
        code = ("from quart_auth_app.config import load_settings as l; s = l(); "
                "print(s.argon2_memory_cost, s.argon2_time_cost, s.argon2_parallelism)")  # fmt: skip
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env=self.env, cwd=ROOT)  # fmt: skip
        m, t, p = (int(x) for x in out.stdout.split()[-3:])
        return m, t, p


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def server_commands(args: argparse.Namespace) -> tuple[list[str], list[str], list[str]]:
    """The bare route on one worker, the app on one worker, the app on the shipped workers."""
    if args.server == "granian":
        serve = [str(Path(sys.executable).with_name("quart-auth-app")), "serve",
                 "--bind", "127.0.0.1:{port}"]  # fmt: skip
        # The bare route under granian as `serve` configures it (HTTP/1, access log on).
        bare = [sys.executable, "-m", "granian", "--interface", "asgi", "--http", "1",
                "--host", "127.0.0.1", "--port", "{port}", "--access-log", "bare_app:app"]  # fmt: skip
        return bare, [*serve, "--workers", "1"], [*serve, "--workers", str(shipped_workers())]
    hypercorn = [sys.executable, "-m", "hypercorn", "--config", str(ROOT / "hypercorn.toml"),
                 "--bind", "127.0.0.1:{port}"]  # fmt: skip
    if args.worker_class:
        hypercorn += ["--worker-class", args.worker_class]
    one = [*hypercorn, "--workers", "1"]
    return [*one, "bare_app:app"], [*one, "quart_auth_app:app"], [*hypercorn, "quart_auth_app:app"]


def start_all(bench: Bench) -> None:
    args, work, env = bench.args, bench.work, bench.env
    bare, app, machine = server_commands(args)
    bench.servers["bare"] = start_server(
        "bare", pinned(args.server_cpu, bare), env, BENCH, work, "/bare"
    )
    bench.servers["app"] = start_server(
        "app", pinned(args.server_cpu, app), env, ROOT, work, "/healthz"
    )
    if args.skip_tutorial:
        return
    bench.servers["machine"] = start_server("machine", machine, env, ROOT, work, "/healthz")
    bench.servers["tutorial"] = start_tutorial(bench, shipped_workers(), cpu="")


def venv_python(venv: Path, packages: list[str]) -> Path:
    """The interpreter of a comparison's own venv, created with `packages` if it is missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        say(f"creating {venv} ({' '.join(packages)})")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return python


def start_tutorial(bench: Bench, workers: int, cpu: str, name: str = "tutorial") -> Server:
    """The Flask tutorial on gunicorn sync workers, seeded with the run's users; its tokens
    (one a line, for the `cookie` script) go to tutorial_tokens.txt."""
    python = venv_python(TUTORIAL_VENV, TUTORIAL_PACKAGES)
    work, env = bench.work, bench.env
    tut_env = {**env, "TUTORIAL_DATABASE_URL": f"sqlite:///{work / 'tutorial.db'}"}
    tokens = subprocess.run([str(python), "tutorial_app.py", "seed", str(bench.args.users)],
                            cwd=BENCH, env=tut_env, capture_output=True, text=True, check=True)  # fmt: skip
    (work / "tutorial_tokens.txt").write_text("\n".join(tokens.stdout.split()[:256]) + "\n")
    gunicorn = [str(TUTORIAL_VENV / "bin" / "gunicorn"), "--workers", str(workers),
                "--worker-class", "sync", "--bind", "127.0.0.1:{port}", "tutorial_app:app"]  # fmt: skip
    return start_server(name, pinned(cpu, gunicorn), tut_env, BENCH, work, "/dashboard")


def bench_env(work: Path, *, plain: bool) -> dict[str, str]:
    """The servers' environment: the run's own database, key and instance folder."""
    return {**os.environ, "SECRET_KEY": SECRET, "INSTANCE_PATH": str(work / "instance"),
            "DATABASE_URL": f"sqlite+aiosqlite:///{work / 'app.db'}",
            "RATE_LIMIT_ENABLED": "false", "PYTHONPATH": str(ROOT),
            "ACCELERATIONS": "false" if plain else "true"}  # fmt: skip


def shipped_workers() -> int:
    import tomllib

    return int(tomllib.loads((ROOT / "hypercorn.toml").read_text()).get("workers", 1))


# ---------------------------------------------------------------- summary


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(bench: Bench, peak_rss: float) -> dict[str, Any]:
    res, args = bench.results, bench.args
    rows = []
    for key, runs in res.items():
        if key == "argon2":
            continue
        rows.append({
            "scenario": key.split("@")[0], "concurrency": int(key.split("@")[1]),
            "rps": median([x["rps"] for x in runs]), "p50_ms": median([x["p50_ms"] for x in runs]),
            "p99_ms": median([x["p99_ms"] for x in runs]),
            "ratio": median([x["ratio"] for x in runs if "ratio" in x]),
            "cpu_us": median([x["cpu_us"] for x in runs if "cpu_us" in x]),
            "cpu_ratio": median([x["cpu_ratio"] for x in runs if "cpu_ratio" in x]),
            "errors": sum(x["errors"] for x in runs),
        })  # fmt: skip
    by_round = lambda key: {x["round"]: x for x in res.get(key, [])}  # noqa: E731
    dash64, dash256 = by_round("dashboard@64"), by_round("dashboard@256")
    argon2 = median([x["rps"] for x in res["argon2"]])
    login = res[f"login@{args.login_concurrency}"]
    flood = res["dashboard_flood@64"]
    targets = []

    t1 = median([x["ratio"] for x in dash64.values()])
    c1 = median([x["cpu_ratio"] for x in dash64.values()])
    targets.append(("1", "GET /dashboard / bare ceiling at c64",
                    f"{t1:.0%} (by CPU per request: {c1:.0%})", ">= 50%", t1 >= 0.5))  # fmt: skip
    t2 = median([x["ratio_to_argon2"] for x in login])
    c2 = median([x["cpu_ratio"] for x in login if "cpu_ratio" in x])
    targets.append(("2", "POST /login / raw argon2 verify rate",
                    f"{t2:.1%} (by CPU per request: {c2:.1%})", ">= 85%", t2 >= 0.85))  # fmt: skip
    t3 = median([x["ratio_to_unloaded"] for x in flood])
    flood_errors = sum(x["errors"] + x["flood"]["errors"] for x in flood)
    targets.append(("3", "GET /dashboard under login flood / unloaded",
                    f"{t3:.0%}, {flood_errors} errors", ">= 50%, 0 errors",
                    t3 >= 0.5 and flood_errors == 0))  # fmt: skip
    if dash256:
        pairs = [pair["ratio"] for x in res.get("tail_pairs@256", []) for pair in x["pairs"]]
        t4 = median(pairs)
        runs = median([dash256[r]["p99_ms"] / dash64[r]["p99_ms"] for r in dash256 if r in dash64])
        e4 = sum(
            x["errors"] for key in ("dashboard@256", "tail_pairs@256") for x in res.get(key, [])
        )
        targets.append(("4", "c256: p99 / p99 at c64, errors",
                        f"{t4:.1f}x ({len(pairs)} adjacent pairs; the 10 s runs: {runs:.1f}x), "
                        f"{e4} errors", "<= 4x, 0 errors", t4 <= 4 and e4 == 0))  # fmt: skip
    if "machine@64" in res:
        mine = median([x["rps"] for x in res["machine@64"]])
        theirs = median([x["rps"] for x in res["tutorial@64"]])
        targets.append(("5", f"machine-wide /dashboard, {shipped_workers()} workers vs tutorial",
                        f"{mine:.0f} vs {theirs:.0f} req/s", "beats it", mine > theirs))  # fmt: skip
    enough = args.users >= 10_000 and bench.app_requests >= 100_000
    targets.append(("6", f"worker RSS peak ({args.users} users, {bench.app_requests} requests)",
                    f"{peak_rss:.0f} MB", f"< {MEMORY_LIMIT_MB} MB" + ("" if enough else
                    " (needs 10k users, 100k requests)"), peak_rss < MEMORY_LIMIT_MB and enough))  # fmt: skip
    return {"rows": rows, "argon2_verify_per_s": argon2, "targets": targets}


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\n{'scenario':<18}{'c':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x ceiling':>11}"
          f"{'CPU us/req':>12}{'x ceiling':>11}{'errors':>8}")  # fmt: skip
    percent = lambda x: "" if x != x else f"{x:.0%}"  # noqa: E731 - NaN: no ratio
    for row in sorted(summary["rows"], key=lambda r: (r["scenario"], r["concurrency"])):
        cpu = "" if row["cpu_us"] != row["cpu_us"] else f"{row['cpu_us']:.0f}"
        print(f"{row['scenario']:<18}{row['concurrency']:>5}{row['rps']:>9.0f}"
              f"{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}{percent(row['ratio']):>11}"
              f"{cpu:>12}{percent(row['cpu_ratio']):>11}{row['errors']:>8}")  # fmt: skip
    print(f"\nraw argon2id verify, one process on the server CPU: "
          f"{summary['argon2_verify_per_s']:.1f}/s\n")  # fmt: skip
    for number, what, value, goal, met in summary["targets"]:
        print(f"target {number}: {what}: {value} (goal {goal}) -> {'MET' if met else 'NOT MET'}")


def markdown(summary: dict[str, Any], note: str) -> str:
    """The table and the targets as Markdown, for docs/performance.md and the README."""
    lines = [f"Measured {note}.", "",
             "| scenario | c | req/s | p50 ms | p99 ms | vs ceiling | CPU µs/req | errors |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in sorted(summary["rows"], key=lambda r: (r["scenario"], r["concurrency"])):
        ratio = "" if row["ratio"] != row["ratio"] else f"{row['ratio']:.0%}"
        cpu = "" if row["cpu_us"] != row["cpu_us"] else f"{row['cpu_us']:.0f}"
        lines.append(f"| {row['scenario']} | {row['concurrency']} | {row['rps']:.0f} | "
                     f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {ratio} | {cpu} | "
                     f"{row['errors']} |")  # fmt: skip
    lines += ["", f"Raw argon2id verify rate, one thread on the server CPU: "
              f"{summary['argon2_verify_per_s']:.1f}/s.", "",
              "| target | measured | goal | |", "|---|---|---|---|"]  # fmt: skip
    for number, what, value, goal, met in summary["targets"]:
        lines.append(f"| {number}. {what} | {value} | {goal} | {'met' if met else 'NOT met'} |")
    for row in summary.get("argon2_table", []):
        if row is summary["argon2_table"][0]:
            lines += ["", "| argon2id setting | verify/s, one core | logins/s, one core (est.) |",
                      "|---|---|---|"]  # fmt: skip
        lines.append(f"| m={row['memory_kib']} KiB, t={row['time_cost']}, p={row['parallelism']}"
                     f" | {row['verify_per_s']:.1f} | {row['login_per_s_estimate']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def draw_chart(summary: dict[str, Any], path: Path, note: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("no chart: install matplotlib (pip install -e '.[bench]')")
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels = {"bare": "bare route (ceiling)", "dashboard": "GET /dashboard",
              "dashboard_pat": "GET /dashboard (personal access token)", "me": "GET /me",
              "refresh": "POST /token/refresh", "login": "POST /login",
              "dashboard_flood": "GET /dashboard + login flood"}  # fmt: skip
    for scenario, label in labels.items():
        rows = sorted((r for r in summary["rows"] if r["scenario"] == scenario),
                      key=lambda r: r["concurrency"])  # fmt: skip
        if rows:
            ax.plot([r["concurrency"] for r in rows], [r["rps"] for r in rows], "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_yscale("log")
    ax.set_xlabel("concurrent connections (wrk)")
    ax.set_ylabel("requests per second (median)")
    ax.set_title(f"quart_auth_app, one worker on one CPU\n{note}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"chart: {path}")


def argon2_table(bench: Bench, login_ratio: float) -> list[dict[str, Any]]:
    table = []
    for m, t, p in ARGON2_SETTINGS:
        done, wall, _ = bench.argon2_verify(m, t, p, 4)
        rate = done / wall
        table.append({"memory_kib": m, "time_cost": t, "parallelism": p, "verify_per_s": rate,
                      "login_per_s_estimate": rate * login_ratio})  # fmt: skip
        print(f"argon2id m={m // 1024} MiB t={t} p={p}: {rate:.1f} verify/s, "
              f"~{rate * login_ratio:.1f} logins/s per core")  # fmt: skip
    return table


@contextlib.contextmanager
def servers_up(bench: Bench) -> Iterator[None]:
    try:
        start_all(bench)
        yield
    finally:
        if not bench.args.keep:
            for server in bench.servers.values():
                server.stop()


def main() -> None:
    if sys.argv[1:2] == ["--markdown-from"]:  # re-render a saved result
        saved = json.loads(Path(sys.argv[2]).read_text())
        print(markdown(saved["summary"], saved["conditions"]), end="")
        return
    args = parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: sudo apt-get install -y wrk (Debian/Ubuntu)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = BENCH / "results" / f"run-{stamp}"
    work.mkdir(parents=True)
    env = bench_env(work, plain=args.plain)
    bench = Bench(args, work, env)
    say(f"seeding {args.users} users into {work / 'app.db'}")
    bench.seed("users", str(args.users), str(work / "users.tsv"))
    bench.seed("pats", "256", str(work / "pats.tsv"))
    with servers_up(bench):
        for name, server in bench.servers.items():
            say(f"{name}: port {server.port}, pid {server.process.pid}, "
                f"workers {server.worker_pids()} (py-spy record -p <worker>)")  # fmt: skip
        watch = MemoryWatch(bench.servers["app"])
        watch.start()
        for r in range(args.rounds):
            bench.one_round(r)
        while args.scenarios == "all" and not args.quick and bench.app_requests < 100_000:
            say(f"topping up to 100,000 requests ({bench.app_requests} so far)")
            bench.run_wrk("app", 64, ["bearer", str(work / "users.tsv"), "/dashboard"])
        time.sleep(1)
        watch.stopping.set()
        summary = summarise(bench, max(watch.peak, watch.last))
        if args.argon2_table:
            logins = bench.results[f"login@{args.login_concurrency}"]
            ratio = median([x["ratio_to_argon2"] for x in logins])
            summary["argon2_table"] = argon2_table(bench, ratio)
    note = (f"{stamp}, {args.server}, {args.rounds} round(s) x {args.duration:.0f} s, "
            f"server on CPU {args.server_cpu}, wrk on CPU {args.client_cpu}")  # fmt: skip
    print_summary(summary)
    output = {"when": stamp, "conditions": note, "args": {k: str(v) for k, v in vars(args).items()},
              "summary": summary, "runs": bench.results, "peak_rss_mb": watch.peak,
              "app_requests": bench.app_requests}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(output, indent=2, default=str))
    (work / "results.json").write_text(json.dumps(output, indent=2, default=str))
    table = args.json.with_name(args.json.stem + "-table.md")
    table.write_text(markdown(summary, note))
    print(f"results: {args.json} and {table}")
    draw_chart(summary, args.chart, note)


if __name__ == "__main__":
    main()
