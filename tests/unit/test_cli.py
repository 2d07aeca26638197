"""SPEC §8: the `quart-auth-app` console script."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import pty
import select
import sqlite3
import subprocess
import sys
import termios
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from werkzeug.security import generate_password_hash

from quart_auth_app import cli, create_app
from quart_auth_app.migrate import HEAD_REVISION, alembic_config

from ..conftest import without_root_privilege

PASSWORD = "command line passphrase"
SECRET = "cli-secret-key-that-is-long-enough-0123456789"
SCRIPT = Path(sys.executable).with_name("quart-auth-app")


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
    return subprocess.run(
        [str(SCRIPT), *argv],
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
        ["roles", "--help"],
        ["roles", "grant", "--help"],
        ["roles", "revoke", "--help"],
        ["roles", "list", "--help"],
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
    monkeypatch.setattr(cli, "has_terminal", lambda: True)
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


async def roles_listed(email: str, capsys: Any) -> list[str]:
    capsys.readouterr()
    assert await run("roles", "list", email) == 0
    return capsys.readouterr().out.splitlines()


async def admin_api_answers(env: dict[str, str], email: str) -> int:
    """The status of GET /admin/users for a fresh login of `email` (the role read at once)."""
    app = create_app(env)
    async with app.test_app():
        client = app.test_client()
        login = await client.post("/login", json={"email": email, "password": PASSWORD})
        token = (await login.get_json())["access_token"]
        response = await client.get("/admin/users", headers={"Authorization": f"Bearer {token}"})
        return response.status_code


async def test_create_user_with_roles(env: dict[str, str], capsys: Any, caplog: Any) -> None:
    caplog.set_level("INFO", logger="quart_auth_app.audit")
    argv = ["create-user", "Kim", "kim@example.com", "--password-stdin"]
    assert await run(*argv, "--role", "admin", "--role", "auditor", stdin=PASSWORD) == 0
    assert "with roles admin, auditor" in capsys.readouterr().out
    assert await roles_listed("kim@example.com", capsys) == ["admin", "auditor"]
    assert await admin_api_answers(env, "kim@example.com") == 200
    audited = [r.audit for r in caplog.records if r.name == "quart_auth_app.audit"]
    granted = [a for a in audited if a["action"] == "grant_role"]
    assert [(a["actor"], a["action"], a["role"]) for a in granted] == [
        ("console", "grant_role", "admin"),
        ("console", "grant_role", "auditor"),
    ]


async def test_create_user_with_a_bad_role_creates_nobody(env: dict[str, str], capsys: Any) -> None:
    argv = ["create-user", "Lu", "lu@example.com", "--password-stdin", "--role", "Big Boss"]
    assert await run(*argv, stdin=PASSWORD) == 1
    err = capsys.readouterr().err
    assert err == (
        "quart-auth-app: role: 'Big Boss' is not a valid role name (a-z first, then a-z 0-9 _ . : -)\n"
    )
    assert not await can_log_in(env, "lu@example.com", PASSWORD)


async def test_roles_grant_revoke_and_list(env: dict[str, str], capsys: Any) -> None:
    assert await run("create-user", "Mo", "mo@example.com", "--password-stdin", stdin=PASSWORD) == 0
    assert await admin_api_answers(env, "mo@example.com") == 403
    capsys.readouterr()
    assert await run("roles", "grant", "MO@example.com", "admin") == 0
    assert capsys.readouterr().out == "mo@example.com now has the role admin\n"
    assert await run("roles", "grant", "mo@example.com", "admin") == 0
    assert capsys.readouterr().out == "mo@example.com already had the role admin\n"
    assert await run("roles", "grant", "mo@example.com", "auditor") == 0
    assert await roles_listed("mo@example.com", capsys) == ["admin", "auditor"]
    assert await admin_api_answers(env, "mo@example.com") == 200
    assert await run("roles", "revoke", "mo@example.com", "auditor") == 0
    assert capsys.readouterr().out == "mo@example.com no longer has the role auditor\n"
    assert await run("roles", "revoke", "mo@example.com", "auditor") == 0
    assert capsys.readouterr().out == "mo@example.com did not have the role auditor\n"
    assert await roles_listed("mo@example.com", capsys) == ["admin"]


async def test_roles_refuse_unknown_emails_and_bad_names(env: dict[str, str], capsys: Any) -> None:
    assert (
        await run("create-user", "Ned", "ned@example.com", "--password-stdin", stdin=PASSWORD) == 0
    )
    capsys.readouterr()
    for argv in (
        ["roles", "grant", "nobody@example.com", "admin"],
        ["roles", "revoke", "nobody@example.com", "admin"],
        ["roles", "list", "nobody@example.com"],
    ):
        assert await run(*argv) == 1
        assert capsys.readouterr().err == (
            "quart-auth-app: no user with the email 'nobody@example.com'\n"
        )
    assert await run("roles", "grant", "ned@example.com", "ADMIN") == 1
    assert "'ADMIN' is not a valid role name" in capsys.readouterr().err
    assert await roles_listed("ned@example.com", capsys) == []


async def test_the_last_active_admin_keeps_the_role_at_the_console(
    env: dict[str, str], capsys: Any
) -> None:
    for name in ("Oz", "Pat"):
        argv = ["create-user", name, f"{name.lower()}@example.com", "--password-stdin"]
        assert await run(*argv, "--role", "admin", stdin=PASSWORD) == 0
    assert await run("roles", "revoke", "oz@example.com", "admin") == 0
    capsys.readouterr()
    assert await run("roles", "revoke", "pat@example.com", "admin") == 1
    assert capsys.readouterr().err == (
        "quart-auth-app: The last active admin cannot be demoted or deactivated\n"
    )
    assert await roles_listed("pat@example.com", capsys) == ["admin"]


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


# --- Operator mistakes: one line on stderr, a non-zero status, never a traceback. ---


def test_version_prints_the_installed_version(env: dict[str, str]) -> None:
    result = script("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"quart-auth-app {metadata.version('quart_auth_app')}\n"


@pytest.mark.parametrize("stdin", ["empty", "closed"])
def test_create_user_without_a_terminal_asks_for_password_stdin(
    env: dict[str, str], stdin: str
) -> None:
    # No controlling terminal (a new session) and stdin not a terminal: as under cron or CI.
    command = [str(SCRIPT), "create-user", "Gus", "gus@example.com"]
    if stdin == "closed":
        command = ["/bin/sh", "-c", 'exec "$0" "$@" <&-', *command]
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        start_new_session=True,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "quart-auth-app: no terminal to ask for the password: use --password-stdin\n"
    )


def test_password_stdin_with_stdin_closed_is_one_line(env: dict[str, str]) -> None:
    command = [str(SCRIPT), "create-user", "Gus", "gus@example.com", "--password-stdin"]
    result = subprocess.run(
        ["/bin/sh", "-c", 'exec "$0" "$@" <&-', *command],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert result.returncode == 1
    assert result.stderr == "quart-auth-app: --password-stdin: standard input is closed\n"


def at_the_prompt(keys: bytes) -> tuple[int, str, bytes]:
    """Run create-user on a new pseudo-terminal, type `keys` at the first prompt.

    Returns the exit status, stderr (a pipe, not the terminal) and what the terminal showed.
    """
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(SCRIPT), "create-user", "Hal", "hal@example.com"],
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
        start_new_session=True,
        # The pty becomes the new session's controlling terminal: getpass opens /dev/tty.
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 30
    while b"Password: " not in shown and time.monotonic() < deadline:
        if select.select([controller], [], [], 0.2)[0]:
            shown += os.read(controller, 1024)
    assert b"Password: " in shown
    os.write(controller, keys)
    try:
        _, err = process.communicate(timeout=10)  # promptly: not only after Enter
    finally:
        process.kill()
        os.close(controller)
    return process.returncode, err.decode(), shown


def test_end_of_input_at_the_prompt_is_one_line(env: dict[str, str]) -> None:
    status, err, _ = at_the_prompt(b"\x04")  # Ctrl-D
    assert status == 1
    assert err == "quart-auth-app: no password given (end of input at the prompt)\n"


def test_ctrl_c_at_the_prompt_exits_130_at_once(env: dict[str, str]) -> None:
    status, err, _ = at_the_prompt(b"\x03")  # Ctrl-C: SIGINT from the terminal
    assert status == 130
    assert err == ""


def test_read_only_instance_folder_is_one_line_naming_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    instance = tmp_path / "read-only"
    instance.mkdir(mode=0o555)
    result = subprocess.run(
        [*without_root_privilege(), str(SCRIPT), "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=60,
        # The default database, in the instance folder.
        env={
            **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            "INSTANCE_PATH": str(instance),
        },
    )
    assert result.returncode == 1
    lock = instance / "app.db.migrate-lock"
    assert result.stderr == (
        f"quart-auth-app: INSTANCE_PATH: cannot create the migration lock {lock}:"
        " Permission denied (the folder must be writable)\n"
    )


def test_sqlite_path_typo_is_refused_without_creating_anything(
    env: dict[str, str], tmp_path: Path
) -> None:
    typo = tmp_path / "instnace"
    url = f"sqlite+aiosqlite:///{typo / 'app.db'}"
    for argv in (["db", "upgrade"], ["create-user", "Ida", "ida@example.com", "--password-stdin"]):
        result = script(*argv, env={"DATABASE_URL": url})
        assert result.returncode == 2
        assert result.stderr == (
            f"quart-auth-app: configuration error: DATABASE_URL: folder {typo} does not exist\n"
        )
    assert not typo.exists()


def test_create_user_on_an_unmigrated_postgres_names_db_upgrade(
    env: dict[str, str], empty_postgres: str
) -> None:
    def create_user() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), "create-user", "Jo", "jo@example.com", "--password-stdin"],
            input=PASSWORD + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "DATABASE_URL": empty_postgres},
        )

    refused = create_user()
    assert refused.returncode == 1
    assert refused.stderr == (
        f"quart-auth-app: database schema is not up to date (found none, need"
        f" {HEAD_REVISION}): run `quart-auth-app db upgrade`\n"
    )
    assert script("db", "upgrade", env={"DATABASE_URL": empty_postgres}).returncode == 0
    created = create_user()
    assert created.returncode == 0, created.stderr
