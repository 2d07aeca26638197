"""SPEC §3 rule 2 with a real client: the tutorial's Postman steps, run by newman, against hypercorn.

newman is installed into tests/postman/node_modules by `npm ci --prefix tests/postman` (.ci/run
does it). Without it the test skips, except under CI (CI=true), where a missing newman fails.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..servers import FAST_HASHING, PROJECT_DIR, free_port, running_server

POSTMAN_DIR = PROJECT_DIR / "tests" / "postman"
COLLECTION = POSTMAN_DIR / "tutorial.postman_collection.json"
NEWMAN = POSTMAN_DIR / "node_modules" / ".bin" / "newman"


def newman() -> Path:
    """The pinned newman binary; skips (fails under CI) when it is not installed."""
    if NEWMAN.exists():
        return NEWMAN
    reason = f"newman is not installed ({NEWMAN}); run: npm ci --prefix tests/postman"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(reason)
    pytest.skip(reason)


def collection_checks() -> tuple[int, int]:
    """How many requests the collection has and how many `pm.test` checks their scripts hold."""
    items = json.loads(COLLECTION.read_text())["item"]
    lines = [
        line
        for item in items
        for event in item.get("event", [])
        if event["listen"] == "test"
        for line in event["script"]["exec"]
    ]
    return len(items), sum(line.count("pm.test(") for line in lines)


def run_newman(binary: Path, base_url: str, report: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(binary),
        "run",
        str(COLLECTION),
        "--env-var",
        f"baseUrl={base_url}",
        "--reporters",
        "cli,json",
        "--reporter-json-export",
        str(report),
        "--color",
        "off",
        "--timeout-request",
        "15000",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def failures(run: dict[str, Any]) -> list[str]:
    return [
        f"{failure['source']['name']}: {failure['error']['message']}" for failure in run["failures"]
    ]


def test_the_tutorials_postman_steps_pass_against_a_live_server(tmp_path: Path) -> None:
    binary = newman()  # skip (or fail) before starting a server for nothing
    requests, checks = collection_checks()
    assert checks >= 12, "the collection checks status, Location, cookies and messages"
    report = tmp_path / "newman.json"
    env = {**FAST_HASHING, "INSTANCE_PATH": str(tmp_path / "instance")}
    # The shipped configuration and embedded SQLite: what the README's quick start runs.
    with running_server(env, workers=None, port=free_port()) as server:
        result = run_newman(binary, server.url, report)
        assert "Traceback" not in server.log()
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert report.exists(), output
    run = json.loads(report.read_text())["run"]
    assert failures(run) == [], output
    assert result.returncode == 0, output
    stats = run["stats"]
    assert stats["requests"] == {"total": requests, "pending": 0, "failed": 0}, output
    # Every check of every script ran: a script that threw early would leave some uncounted.
    assert stats["assertions"] == {"total": checks, "pending": 0, "failed": 0}, output
