"""SPEC §8: Schemathesis against the live server finds no 5xx and no response off its schema."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

VENV_BIN = Path(sys.executable).parent
PASSWORD = "schemathesis passphrase"
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """hypercorn serving the app on a free port, with its access log in a file."""
    port = free_port()
    log_path = tmp_path / "server.log"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'live.db'}",
        "INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "schemathesis-secret-key-long-enough-0123456789",
        "RATE_LIMIT_ENABLED": "false",
        "ARGON2_MEMORY_COST": "8192",
        "ARGON2_TIME_COST": "1",
    }
    command = [
        str(VENV_BIN / "hypercorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--access-logfile",
        "-",
        "--error-logfile",
        "-",
        "quart_auth_app:app",
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base, process)
            yield base, log_path
        finally:
            process.terminate()
            process.wait(timeout=15)


def wait_until_up(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not start within 30 s")


def access_token(base: str) -> str:
    """A real user's bearer token, so that protected operations are exercised too."""
    account = {"name": "Schema", "email": "schema@example.com", "password": PASSWORD}
    assert httpx.post(f"{base}/signup", json=account).status_code == 201
    response = httpx.post(f"{base}/login", json=account)
    assert response.status_code == 200
    token: str = response.json()["access_token"]
    return token


def test_schemathesis_finds_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    base, log_path = server
    token = access_token(base)
    started = time.monotonic()
    result = subprocess.run(
        [
            str(VENV_BIN / "schemathesis"),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "1",
            "--no-shrink",
            "--workers",
            "2",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            # Logging out would revoke the token halfway; those operations run unauthenticated below.
            "--exclude-path-regex",
            "^/logout",
            "--header",
            f"Authorization: Bearer {token}",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert elapsed < 120
    unauthenticated = subprocess.run(
        [
            str(VENV_BIN / "schemathesis"),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--include-path-regex",
            "^/logout",
            "--max-examples",
            "5",
            "--seed",
            "1",
            "--generation-database",
            "none",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert unauthenticated.returncode == 0, unauthenticated.stdout[-4000:]
    # The access log has one line per request and never the bearer token.
    log = log_path.read_text()
    assert '"GET /openapi.json' in log or "GET /openapi.json" in log
    assert token not in log and PASSWORD not in log
