"""Idle authenticated websockets on one worker: memory per socket, the liveness check's CPU,
and the time from `POST /logout` to the socket's close frame (docs/performance.md).

    .venv/bin/python bench/ws_idle.py                    # 1,000 sockets, SQLite, no Redis
    .venv/bin/python bench/ws_idle.py --redis redis://127.0.0.1:6379/1
    .venv/bin/python bench/ws_idle.py --sockets 200 --samples 20 --idle 10

It starts `quart-auth-app serve --workers 1` (granian) on a fresh SQLite file, logs in once per
socket (distinct sessions, so the once-a-second check reads them all), opens the sockets from
this process, and reads the worker's resident memory and CPU time from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
SERVE = Path(sys.executable).with_name("quart-auth-app")
PASSWORD = "benchmark passphrase 0123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def worker_pid(master: int) -> int:
    """The one worker of a granian master (its only child)."""
    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("no worker")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(tmp: Path, redis: str | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'ws.db'}",
        "INSTANCE_PATH": str(tmp),
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ARGON2_MEMORY_COST": "8192",
        "ARGON2_TIME_COST": "1",
        "RATE_LIMIT_ENABLED": "false",
        **(
            {"REDIS_URL": redis, "REDIS_KEY_PREFIX": f"qaa-bench-{uuid.uuid4().hex}"}
            if redis
            else {}
        ),
    }
    command = [
        str(SERVE),
        "serve",
        "--workers",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
        "--no-access-log",
    ]
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


async def tokens(url: str, count: int) -> list[str]:
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        created = await client.post(
            "/signup", json={"name": "Bench", "email": email, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        limit = asyncio.Semaphore(8)

        async def login() -> str:
            async with limit:
                response = await client.post("/login", json={"email": email, "password": PASSWORD})
                token: str = response.json()["access_token"]
                return token

        return list(await asyncio.gather(*(login() for _ in range(count))))


async def open_sockets(url: str, access: list[str]) -> list[ClientConnection]:
    ws_url = url.replace("http://", "ws://") + "/ws/dashboard"
    limit = asyncio.Semaphore(32)

    async def one(token: str) -> ClientConnection:
        async with limit:
            held = await connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"})
            await held.recv()  # the welcome
            return held

    return list(await asyncio.gather(*(one(token) for token in access)))


async def logout_to_close(url: str, held: ClientConnection, token: str) -> float:
    async with httpx.AsyncClient(base_url=url) as client:
        started = time.perf_counter()
        await client.post("/logout", headers={"Authorization": f"Bearer {token}"})
        try:
            await asyncio.wait_for(held.recv(), 5)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4401
            return time.perf_counter() - started
    raise RuntimeError("socket not closed within 5 s")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    access = await tokens(url, args.sockets + args.samples)
    await asyncio.sleep(1)
    idle_before = cpu_seconds(pid)
    await asyncio.sleep(args.idle)
    cpu_without = (cpu_seconds(pid) - idle_before) / args.idle
    before = rss_bytes(pid)
    sockets = await open_sockets(url, access)
    await asyncio.sleep(2)
    after = rss_bytes(pid)
    idle_start = cpu_seconds(pid)
    await asyncio.sleep(args.idle)
    cpu_with = (cpu_seconds(pid) - idle_start) / args.idle
    latencies = []
    for held, token in zip(sockets[: args.samples], access[: args.samples], strict=True):
        latencies.append(await logout_to_close(url, held, token))
        await asyncio.sleep(0.05)
    for held in sockets:
        await held.close()
    return {
        "sockets": len(sockets),
        "rss_per_socket_kib": round((after - before) / len(sockets) / 1024, 1),
        "worker_cpu_idle_no_sockets_pct": round(100 * cpu_without, 2),
        "worker_cpu_idle_with_sockets_pct": round(100 * cpu_with, 2),
        "logout_to_close_median_ms": round(1000 * statistics.median(latencies), 1),
        "logout_to_close_p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "samples": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50, help="logouts timed")
    parser.add_argument("--idle", type=float, default=20, help="seconds of idle CPU measured")
    parser.add_argument("--redis", help="REDIS_URL for the run with push")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qaa-ws-bench-") as tmp:
        process, url = start(Path(tmp), args.redis)
        try:
            result = asyncio.run(measure(url, worker_pid(process.pid), args))
        finally:
            process.terminate()
            process.wait(20)
    result["redis"] = bool(args.redis)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
