"""SPEC §8: the `quart-auth-app` console script."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from werkzeug.security import generate_password_hash

from quart_auth_app import cli, create_app
from quart_auth_app.migrate import alembic_config

PASSWORD = "command line passphrase"
SECRET = "cli-secret-key-that-is-long-enough-0123456789"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": SECRET,
        "ARGON2_MEMORY_COST": "8192",
        "ARGON2_TIME_COST": "1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


async def run(*argv: str, stdin: str = "") -> int:
    """Run the console script in a thread (it starts its own event loop)."""
    sys_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return await asyncio.to_thread(cli.main, list(argv))
    finally:
        sys.stdin = sys_stdin


async def can_log_in(env: dict[str, str], email: str, password: str) -> bool:
    app = create_app(env)
    async with app.test_app():
        response = await app.test_client().post(
            "/login", json={"email": email, "password": password}
        )
        return response.status_code == 200


def script(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("quart-auth-app")
    return subprocess.run(
        [str(executable), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["db", "--help"],
        ["db", "upgrade", "--help"],
        ["create-user", "--help"],
        ["import-flask-db", "--help"],
    ],
)
def test_every_command_has_help(argv: list[str], env: dict[str, str]) -> None:
    result = script(*argv)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: quart-auth-app")


def test_configuration_error_is_one_line_and_exit_2(env: dict[str, str]) -> None:
    result = script("db", "upgrade", env={"DATABASE_URL": "mysql://nope"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


async def test_db_upgrade_creates_the_schema(env: dict[str, str], capsys: Any) -> None:
    assert await run("db", "upgrade") == 0
    assert "up to date" in capsys.readouterr().out
    with sqlite3.connect(Path(env["INSTANCE_PATH"]) / "cli.db") as conn:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert {"users", "login_sessions", "refresh_tokens", "mail_tokens", "alembic_version"} <= tables
    assert await run("db", "upgrade") == 0  # again: nothing to do, no error


async def test_db_upgrade_names_accounts_that_would_become_one(
    env: dict[str, str], capsys: Any
) -> None:
    # A database of the first revision where SQLite's ASCII-only lower() let both in.
    await asyncio.to_thread(command.upgrade, alembic_config(env["DATABASE_URL"]), "0001")
    with sqlite3.connect(Path(env["INSTANCE_PATH"]) / "cli.db") as conn:
        conn.executemany(
            "INSERT INTO users (public_id, name, email, password, email_verified, created_at) "
            "VALUES (?, 'U', ?, 'x', 0, CURRENT_TIMESTAMP)",
            [("p1", "Ülrich@example.com"), ("p2", "ülrich@example.com")],
        )
    assert await run("db", "upgrade") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "'Ülrich@example.com'" in err and "'ülrich@example.com'" in err
    assert "then run `quart-auth-app db upgrade` again" in err


async def test_create_user_with_password_from_stdin(env: dict[str, str], capsys: Any) -> None:
    assert (
        await run(
            "create-user", "Cleo", "Cleo@Example.com", "--password-stdin", stdin=PASSWORD + "\n"
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "created user Cleo@example.com" in out and PASSWORD not in out
    assert await can_log_in(env, "cleo@example.com", PASSWORD)


async def test_create_user_prompts_without_echo(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr(cli.getpass, "getpass", fake_getpass)
    assert await run("create-user", "Dan", "dan@example.com") == 0
    assert prompts == ["Password: ", "Repeat password: "]
    assert await can_log_in(env, "dan@example.com", PASSWORD)


async def test_create_user_refuses_bad_input_and_duplicates(
    env: dict[str, str], capsys: Any
) -> None:
    assert (
        await run("create-user", "Eve", "eve@example.com", "--password-stdin", stdin="short\n") == 1
    )
    assert "at least 8 characters" in capsys.readouterr().err
    assert (
        await run("create-user", "Eve", "eve@example.com", "--password-stdin", stdin=PASSWORD) == 0
    )
    assert (
        await run("create-user", "Eve", "EVE@example.com", "--password-stdin", stdin=PASSWORD) == 1
    )
    err = capsys.readouterr().err
    assert "User already exists" in err and err.count("\n") == 1


async def test_import_flask_db_prints_a_summary_and_is_idempotent(
    env: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    legacy = tmp_path / "Database.db"
    with sqlite3.connect(legacy) as conn:
        conn.execute(
            'CREATE TABLE "user" (id INTEGER PRIMARY KEY, public_id VARCHAR(50), name VARCHAR(100), '
            "email VARCHAR(70), password VARCHAR(80))"
        )
        conn.executemany(
            'INSERT INTO "user" (public_id, name, email, password) VALUES (?, ?, ?, ?)',
            [
                (
                    "p1",
                    "Fay",
                    "fay@example.com",
                    generate_password_hash("fay's old password", method="scrypt"),
                ),
                ("p2", "Fay twin", "FAY@example.com", generate_password_hash("another password")),
            ],
        )
    assert await run("import-flask-db", str(legacy)) == 0
    out = capsys.readouterr().out
    assert "imported 1, already present 0, skipped 1" in out
    assert "duplicate email" in out
    assert await run("import-flask-db", str(legacy)) == 0
    assert "imported 0, already present 1, skipped 1" in capsys.readouterr().out
    assert await can_log_in(env, "fay@example.com", "fay's old password")


async def test_import_of_a_missing_file_fails_with_one_line(
    env: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    assert await run("import-flask-db", str(tmp_path / "nope.db")) == 1
    err = capsys.readouterr().err
    assert "no such file" in err and err.count("\n") == 1
