"""The lists of common passwords that new passwords may not be (NIST SP 800-63B §5.1.1.2).

The lists ship as package data in `data/` with their licences; `data/README.md` says where
each came from.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

LIST_PREFIX = "common-passwords-"


@cache
def common_passwords() -> frozenset[str]:
    """Every listed password, lowercased; read once per process."""
    folder = files(__package__).joinpath("data")
    entries: set[str] = set()
    for item in folder.iterdir():
        if item.name.startswith(LIST_PREFIX) and item.name.endswith(".txt"):
            entries.update(_entries(item.read_text("utf-8")))
    return frozenset(entries)


def _entries(text: str) -> set[str]:
    return {line.strip().lower() for line in text.splitlines() if line.strip()}


def is_common_password(password: str) -> bool:
    """Whether a password (compared case-insensitively, ignoring outer spaces) is listed."""
    return password.strip().lower() in common_passwords()
