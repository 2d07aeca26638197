"""SPEC §8: the Flask tutorial's users are imported once, log in with their old passwords,
and their werkzeug (or outdated argon2) hashes become current argon2id at that login."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from quart_auth_app import create_app
from quart_auth_app.importer import ImportFailed, ImportReport, import_users, read_tutorial_users
from quart_auth_app.models import User
from quart_auth_app.testing import db_session, make_user

# The tutorial's model: class User(db.Model) with these columns, table name `user`.
TUTORIAL_TABLE = (
    'CREATE TABLE "user" (id INTEGER PRIMARY KEY, public_id VARCHAR(50) UNIQUE, '
    "name VARCHAR(100), email VARCHAR(70) UNIQUE, password VARCHAR(80))"
)
PBKDF2_PASSWORD = "old flask password one"
SCRYPT_PASSWORD = "old flask password two"


def tutorial_db(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A Database.db as the tutorial leaves it: (public_id, name, email, password hash)."""
    with sqlite3.connect(path) as conn:
        conn.execute(TUTORIAL_TABLE)
        conn.executemany(
            'INSERT INTO "user" (public_id, name, email, password) VALUES (?, ?, ?, ?)', rows
        )
    return path


@pytest.fixture
def legacy_rows() -> list[tuple[str, str, str, str]]:
    return [
        (
            "pid-pbkdf2",
            "Paul",
            "paul@example.com",
            generate_password_hash(PBKDF2_PASSWORD, method="pbkdf2:sha256"),
        ),
        (
            "pid-scrypt",
            "Sara",
            "Sara@Example.COM",
            generate_password_hash(SCRYPT_PASSWORD, method="scrypt"),
        ),
        ("pid-dup", "Paul again", "PAUL@example.com", generate_password_hash("x" * 10)),
        ("pid-bad-email", "Nobody", "not an email", generate_password_hash("x" * 10)),
        ("pid-taken", "Ann twin", "ann@example.com", generate_password_hash("x" * 10)),
        ("pid-sha", "Old", "old@example.com", "sha256$salt$0123abcd"),
        ("pid-noname", "   ", "blank@example.com", generate_password_hash("x" * 10)),
    ]


@pytest.fixture
def legacy_db(tmp_path: Path, legacy_rows: list[tuple[str, str, str, str]]) -> Path:
    return tutorial_db(tmp_path / "Database.db", legacy_rows)


async def run_import(app: Quart, path: Path) -> ImportReport:
    rows = await read_tutorial_users(path)
    async with db_session(app) as db:
        return await import_users(db, rows)


async def stored_user(app: Quart, public_id: str) -> User | None:
    async with db_session(app) as db:
        result = await db.execute(select(User).where(User.public_id == public_id))
        return result.scalar_one_or_none()


async def login(client: Any, email: str, password: str) -> Any:
    return await client.post("/login", json={"email": email, "password": password})


async def test_import_keeps_valid_users_and_reports_the_rest(
    app: Quart, user: User, legacy_db: Path
) -> None:
    report = await run_import(app, legacy_db)
    assert (report.imported, report.already_present) == (2, 0)
    assert len(report.skipped) == 5
    reasons = "\n".join(report.skipped)
    for expected in (
        "duplicate email",
        "invalid email",
        "unsupported password hash",
        "invalid name",
    ):
        assert expected in reasons
    assert "sha256$salt" not in reasons  # hashes are never printed
    sara = await stored_user(app, "pid-scrypt")
    # The email as the tutorial stored it (SPEC §8: kept); its key is what lookups use.
    assert sara is not None and sara.name == "Sara" and sara.email == "Sara@Example.COM"
    assert sara.email_key == "sara@example.com"
    assert sara.password.startswith("scrypt:") and not sara.email_verified
    assert await stored_user(app, "pid-taken") is None


async def test_an_imported_email_is_kept_and_found_by_any_case(
    app: Quart, client: Any, tmp_path: Path
) -> None:
    hashed = generate_password_hash(PBKDF2_PASSWORD, method="pbkdf2:sha256")
    rows = [("pid-bert", "Bert", "Bert@Example.COM", hashed)]
    rows.append(("pid-bert-2", "Bert twin", "bert@EXAMPLE.com", hashed))
    report = await run_import(app, tutorial_db(tmp_path / "Database.db", rows))
    assert report.imported == 1
    assert report.skipped == ["user id=2 ('bert@EXAMPLE.com'): duplicate email (case-insensitive)"]
    response = await login(client, "BERT@example.com", PBKDF2_PASSWORD)
    assert response.status_code == 200
    token = (await response.get_json())["access_token"]
    me = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert (await me.get_json())["email"] == "Bert@Example.COM"
    signup = await client.post(
        "/signup", json={"name": "B", "email": "bert@example.com", "password": "a new passphrase"}
    )
    assert signup.status_code == 400


async def test_reimport_adds_nothing_twice(app: Quart, legacy_db: Path) -> None:
    first = await run_import(app, legacy_db)
    second = await run_import(app, legacy_db)
    assert first.imported == 3  # no existing Ann here, so her twin's row is new
    assert (second.imported, second.already_present) == (0, 3)
    assert second.skipped == first.skipped
    async with db_session(app) as db:
        assert len((await db.execute(select(User))).all()) == 3


@pytest.mark.parametrize(
    ("public_id", "email", "password", "old_prefix"),
    [
        ("pid-pbkdf2", "paul@example.com", PBKDF2_PASSWORD, "pbkdf2:sha256:"),
        ("pid-scrypt", "sara@example.com", SCRYPT_PASSWORD, "scrypt:"),
    ],
)
async def test_imported_user_logs_in_and_hash_becomes_argon2id(
    app: Quart,
    client: Any,
    legacy_db: Path,
    public_id: str,
    email: str,
    password: str,
    old_prefix: str,
) -> None:
    await run_import(app, legacy_db)
    before = await stored_user(app, public_id)
    assert before is not None and before.password.startswith(old_prefix)

    wrong = await login(client, email, password + "!")
    assert wrong.status_code == 401
    unchanged = await stored_user(app, public_id)
    assert unchanged is not None and unchanged.password == before.password

    response = await login(client, email, password)
    assert response.status_code == 200
    after = await stored_user(app, public_id)
    assert after is not None and after.password.startswith("$argon2id$")

    again = await login(client, email, password)
    assert again.status_code == 200
    dashboard = await client.get(
        "/dashboard",
        headers={"Authorization": f"Bearer {(await again.get_json())['access_token']}"},
    )
    assert (await dashboard.get_json())["message"].startswith(f"Welcome {before.name}!")


async def test_changed_argon2_parameters_upgrade_the_hash_at_login(
    app: Quart, app_config: dict[str, Any]
) -> None:
    created = await make_user(app, email="cost@example.com", password="argon two passphrase")
    assert ",t=1," in created.password
    stronger = create_app({**app_config, "ARGON2_TIME_COST": "2"})
    async with stronger.test_app():
        response = await login(stronger.test_client(), "cost@example.com", "argon two passphrase")
        assert response.status_code == 200
        upgraded = await stored_user(stronger, created.public_id)
    assert upgraded is not None and upgraded.password.startswith("$argon2id$")
    assert ",t=2," in upgraded.password


async def test_not_a_tutorial_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="no such file"):
        await read_tutorial_users(tmp_path / "missing.db")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE people (id INTEGER)")
    with pytest.raises(ImportFailed, match="not the tutorial's database"):
        await read_tutorial_users(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ImportFailed):
        await read_tutorial_users(garbage)
