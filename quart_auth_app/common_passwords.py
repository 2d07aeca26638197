"""The list of common passwords that new passwords may not be (NIST SP 800-63B §5.1.1.2)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def _common() -> frozenset[str]:
    text = files(__package__).joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def is_common_password(password: str) -> bool:
    """Whether a password (compared case-insensitively) is on the common list."""
    return password.lower() in _common()
