"""Import users from the Flask tutorial's SQLite `Database.db` (table `user`), idempotently.

Imported users keep their public_id, their email as the tutorial stored it (validated, and
found by its key like any other) and their werkzeug hash; PasswordHasher verifies it and the
first successful login replaces it with argon2id.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import User
from .passwords import WERKZEUG_PREFIXES
from .rules import check_email, check_name, email_key

MAX_PUBLIC_ID = 50
MAX_HASH = 255


class ImportFailed(Exception):
    """The file cannot be read as the tutorial's database; the message says why."""


@dataclass(frozen=True)
class TutorialUser:
    """One row of the tutorial's `user` table, as stored."""

    id: int
    public_id: str | None
    name: str | None
    email: str | None
    password: str | None

    def label(self) -> str:
        return f"user id={self.id} ({self.email!r})"


@dataclass
class ImportReport:
    """What an import did: counts, and one line per row it refused."""

    imported: int = 0
    already_present: int = 0
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        summary = (
            f"imported {self.imported}, already present {self.already_present}, "
            f"skipped {len(self.skipped)}"
        )
        return [*(f"skipped {line}" for line in self.skipped), summary]


@dataclass
class _Known:
    """Users already in the database or accepted earlier in this run: their email keys."""

    key_by_public_id: dict[str, str]
    keys: set[str]

    def add(self, public_id: str, key: str) -> None:
        self.key_by_public_id[public_id] = key
        self.keys.add(key)


async def read_tutorial_users(path: Path) -> list[TutorialUser]:
    """Every row of the tutorial's `user` table (read-only, off the event loop)."""
    return await asyncio.to_thread(_read_rows, path)


def _read_rows(path: Path) -> list[TutorialUser]:
    if not path.is_file():
        raise ImportFailed(f"{path}: no such file")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            rows = conn.execute(
                'SELECT id, public_id, name, email, password FROM "user" ORDER BY id'
            ).fetchall()
    except sqlite3.DatabaseError as error:
        raise ImportFailed(f"{path}: not the tutorial's database ({error})") from None
    return [_tutorial_user(*row) for row in rows]


def _tutorial_user(id_: int, *texts: object) -> TutorialUser:
    public_id, name, email, password = (None if v is None else str(v) for v in texts)
    return TutorialUser(int(id_), public_id, name, email, password)


async def import_users(db: AsyncSession, rows: list[TutorialUser]) -> ImportReport:
    """Add the rows not imported yet, in one transaction; report duplicates and invalid rows."""
    known = await _known_users(db)
    report = ImportReport()
    for row in rows:
        outcome = _accept(row, known)
        if isinstance(outcome, User):
            db.add(outcome)
            known.add(outcome.public_id, outcome.email_key)
            report.imported += 1
        elif outcome is None:
            report.already_present += 1
        else:
            report.skipped.append(f"{row.label()}: {outcome}")
    await db.commit()
    return report


async def _known_users(db: AsyncSession) -> _Known:
    result = await db.execute(select(User.public_id, User.email_key))
    pairs = {public_id: key for public_id, key in result.all()}
    return _Known(pairs, set(pairs.values()))


def _accept(row: TutorialUser, known: _Known) -> User | str | None:
    """A new User, None when this row was imported before, or why it is refused."""
    email = (row.email or "").strip()  # kept as the tutorial stored it (trimmed) once valid
    try:
        check_email(email)
    except ValueError as error:
        return f"invalid email: {error}"
    try:
        name = check_name(row.name or "")
    except ValueError as error:
        return f"invalid name: {error}"
    public_id = (row.public_id or "").strip()
    if not public_id or len(public_id) > MAX_PUBLIC_ID:
        return "missing or overlong public_id"
    key = email_key(email)
    if public_id in known.key_by_public_id:
        same = known.key_by_public_id[public_id] == key
        return None if same else "public_id already belongs to another user"
    if key in known.keys:
        return "duplicate email (case-insensitive)"
    problem = _hash_problem(row.password or "")
    if problem:
        return problem
    return User(public_id=public_id, name=name, email=email, email_key=key, password=row.password)


def _hash_problem(stored: str) -> str | None:
    """Why a stored password hash cannot be kept, or None (the hash itself is never printed)."""
    if stored.startswith("$argon2"):
        return None
    if not stored.startswith(WERKZEUG_PREFIXES):
        method = stored.split("$", 1)[0][:20] or "empty"
        return f"unsupported password hash method {method!r}"
    if stored.count("$") != 2 or len(stored) > MAX_HASH:
        return "malformed werkzeug password hash"
    return None
