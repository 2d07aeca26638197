"""Real server processes for tests: hypercorn, or `quart-auth-app serve`, on a free loopback port,
with its own environment.

Usage::

    with running_server({"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path)}) as server:
        httpx.get(server.url + "/healthz")
    with running_serve(env, workers=2) as server:  # the README's production command
        ...

The child's environment is the test runner's minus every setting of the app (so the
`SECRET_KEY`/`INSTANCE_PATH` that conftest puts in `os.environ` do not leak in), plus `env`.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from quart_auth_app.config import PARSERS

PROJECT_DIR = Path(__file__).resolve().parent.parent
HYPERCORN_TOML = PROJECT_DIR / "hypercorn.toml"
APP_VARIABLES = {*PARSERS, "SECRET_KEY", "INSTANCE_PATH"}
# Cheapest argon2id parameters, as the in-process fixtures use.
FAST_HASHING = {"ARGON2_MEMORY_COST": "8192", "ARGON2_TIME_COST": "1"}
# The worker's pid in every access-log line, so tests can tell which worker answered.
ACCESS_LOG_FORMAT = "access pid=%(p)s status=%(s)s %(r)s"
ACCESS_PID = re.compile(r"access pid=<(\d+)>")
SERVE_SCRIPT = Path(sys.executable).with_name("quart-auth-app")
# The line each server logs once per worker when that worker serves.
READY_LINES = {"granian": "[INFO] Started worker-", "hypercorn": "[INFO] Running on "}
GRANIAN_SPAWN = re.compile(r"Spawning worker-(\d+) with PID: (\d+)")


class ServerFailed(RuntimeError):
    """The server exited or never answered /healthz; the message carries its log."""


@dataclass
class Server:
    """One running hypercorn process (with its workers) and where it logs."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    env: dict[str, str] = field(repr=False)
    ready_line: str = READY_LINES["hypercorn"]

    def log(self) -> str:
        """Everything the server printed so far (stdout and stderr together)."""
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> set[str]:
        """Pids of the workers that answered at least one request (from the access log)."""
        return set(ACCESS_PID.findall(self.log()))

    def workers_running(self) -> int:
        """How many workers have said they are serving (replacements count too)."""
        return self.log().count(self.ready_line)

    def granian_workers(self) -> dict[int, int]:
        """Under granian: each worker's number and the pid it was last spawned with."""
        return {int(number): int(pid) for number, pid in GRANIAN_SPAWN.findall(self.log())}

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def alive(self) -> bool:
        """Whether the main process is still running."""
        return self.process.poll() is None

    def stop(self, timeout: float = 20) -> int:
        """Ask for a graceful shutdown (SIGTERM), kill after `timeout`; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        return self.process.returncode


# Below the kernel's range for outgoing connections (32768-60999): none of those can take it.
SPARE_PORTS = range(20000, 30000)


def free_port() -> int:
    """A loopback port in 20000-30000 that nothing listens on right now."""
    for port in random.sample(SPARE_PORTS, 50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000-30000")


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The runner's environment without the app's settings, plus `env`."""
    base = {k: v for k, v in os.environ.items() if k not in APP_VARIABLES}
    return {**base, "PYTHONUNBUFFERED": "1", **env}


def start_server(
    env: Mapping[str, str],
    *,
    workers: int | None = 1,
    config: Path = HYPERCORN_TOML,
    extra_args: Sequence[str] = (),
    timeout: float = 60,
    port: int | None = None,
    ready_status: int = 200,
) -> Server:
    """Start `hypercorn --config <config> quart_auth_app:app`; wait until every worker serves.

    `workers=None` keeps the count the config file sets; `port=None` takes any free port.
    Serving means /healthz answers `ready_status` (503 for a server that runs while a store it
    needs is down).
    """
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "hypercorn",
        "--config",
        str(config),
        "--bind",
        f"127.0.0.1:{port}",
        *(["--workers", str(workers)] if workers is not None else []),
        "--access-logformat",
        ACCESS_LOG_FORMAT,
        *extra_args,
        "quart_auth_app:app",
    ]
    expected = workers if workers is not None else configured_workers(config)
    return _launch(
        command, env, port, READY_LINES["hypercorn"], max(1, expected), timeout, ready_status
    )


def start_serve(
    env: Mapping[str, str],
    *,
    workers: int = 2,
    server: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 60,
) -> Server:
    """Start `quart-auth-app serve` (granian unless `server` names another); wait until it serves."""
    port = free_port()
    command = [
        str(SERVE_SCRIPT),
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        *(["--server", server] if server else []),
        *extra_args,
    ]
    ready_line = READY_LINES[server or "granian"]
    return _launch(command, env, port, ready_line, workers, timeout)


def _launch(
    command: Sequence[str],
    env: Mapping[str, str],
    port: int,
    ready_line: str,
    workers: int,
    timeout: float,
    ready_status: int = 200,
) -> Server:
    handle, name = tempfile.mkstemp(prefix="qaa-server-", suffix=".log")
    log_path = Path(name)
    os.close(handle)
    full_env = child_environment(env)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a hard kill takes the workers too
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path, full_env, ready_line)
    try:
        wait_until_healthy(server, workers, timeout, ready_status)
    except ServerFailed:
        server.stop()
        raise
    return server


def configured_workers(config: Path) -> int:
    """The worker count a hypercorn TOML file asks for (hypercorn's default is 1)."""
    with config.open("rb") as handle:
        workers: int = tomllib.load(handle).get("workers", 1)
        return workers


def wait_until_healthy(
    server: Server, workers: int, timeout: float, ready_status: int = 200
) -> None:
    """Poll until all workers run and /healthz answers 200 (or `ready_status`); ServerFailed
    if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServerFailed(f"server exited with {server.process.returncode}:\n{server.log()}")
        if server.workers_running() >= workers and _health(server) == ready_status:
            return
        time.sleep(0.2)
    raise ServerFailed(f"server not healthy after {timeout}s:\n{server.log()}")


def _health(server: Server) -> int | None:
    try:
        return httpx.get(server.url + "/healthz", timeout=2).status_code
    except httpx.TransportError:
        return None


@contextmanager
def running_server(
    env: Mapping[str, str],
    *,
    workers: int | None = 1,
    extra_args: Sequence[str] = (),
    port: int | None = None,
    ready_status: int = 200,
) -> Iterator[Server]:
    """A server for the duration of a `with` block; its log is kept only if the block failed."""
    server = start_server(
        env, workers=workers, extra_args=extra_args, port=port, ready_status=ready_status
    )
    with _cleaned_up(server):
        yield server


@contextmanager
def running_serve(
    env: Mapping[str, str],
    *,
    workers: int = 2,
    server: str | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[Server]:
    """`quart-auth-app serve` for the duration of a `with` block, as `running_server`."""
    with _cleaned_up(start_serve(env, workers=workers, server=server, extra_args=extra_args)) as s:
        yield s


@contextmanager
def _cleaned_up(server: Server) -> Iterator[Server]:
    try:
        yield server
    except BaseException:
        server.stop()
        print(f"server log kept at {server.log_path}")
        raise
    server.stop()
    server.log_path.unlink(missing_ok=True)
