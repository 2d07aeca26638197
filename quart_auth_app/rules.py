"""Input rules (SPEC §7): names, emails and passwords, including the common-password lists.

Plain functions that take a string and return it normalised or raise ValueError with a reason a
person can read; web/schemas.py attaches them to the request models. The common-password lists
(NIST SP 800-63B §5.1.1.2) ship as package data in `data/` with their licences.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from importlib.resources import files

from email_validator import EmailNotValidError, validate_email

LIST_PREFIX = "common-passwords-"
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_NAME = 100
MAX_EMAIL = 320
MAX_LOCAL_PART = 64


def _printable(value: str, field: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{field} must not contain NUL characters")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise ValueError(f"{field} contains invalid characters")
    return value


def check_name(value: str) -> str:
    """Names: 1-100 characters after trimming, no control characters."""
    name = _printable(value, "Name").strip()
    if not name:
        raise ValueError("Name is required")
    if len(name) > MAX_NAME:
        raise ValueError(f"Name must be at most {MAX_NAME} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in name):
        raise ValueError("Name must not contain control characters")
    return name


def check_email(value: str) -> str:
    """Emails: validated and normalised (no DNS look-up)."""
    candidate = _printable(value, "Email").strip()
    if not candidate:
        raise ValueError("Email is required")
    if len(candidate) > MAX_EMAIL:
        raise ValueError("Email address is too long")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    if len(result.local_part) > MAX_LOCAL_PART:
        # RFC 5321 §4.5.3.1.1; email-validator checks it only in its strict mode.
        raise ValueError(f"The part before the @-sign must be at most {MAX_LOCAL_PART} characters")
    return result.normalized


# A dot-atom address with an ASCII domain that is not punycode: email-validator's normalised
# form of it differs only in the domain's case, if it is valid at all. ASCII only: with
# IGNORECASE alone, [a-z] would also match the long s and the Kelvin sign, which fold to s and k.
PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?!.*xn--)[A-Za-z0-9.-]+", re.IGNORECASE | re.ASCII
)


def email_key(address: str) -> str:
    """The key an account is found by and unique on: one account per key (SPEC §4).

    The address as check_email normalises it (NFC; domain IDNA-mapped, so lower-cased), then
    its local part case-folded (Unicode canonical caseless matching): Ülrich, ülrich and
    ÜLRICH are one account, as are straße and STRASSE, or the Greek sigmas. The domain is
    not folded further: straße.de and strasse.de are different domains under IDNA 2008. A
    plain ASCII address is simply lower-cased, without email-validator (a tenth of a
    millisecond on every login); an invalid one is folded whole and matches no account. A key
    is its own key, so callers may pass either an address or its key.
    """
    if PLAIN_EMAIL.fullmatch(address):
        return address.lower()
    try:
        normalised = check_email(address)
    except ValueError:
        return _caseless(address)
    local, _, domain = normalised.rpartition("@")
    return f"{_caseless(local)}@{domain}"


def _caseless(text: str) -> str:
    # The Unicode Standard §3.13, D145 (canonical caseless match): NFD before folding, so a
    # combining mark folds as the precomposed letter would; NFC after, the shorter form.
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold())


def check_new_password(value: str) -> str:
    """New passwords: 8-1024 characters, no NUL or lone surrogates, not a common password."""
    _printable(value, "Password")
    if len(value) < MIN_PASSWORD:
        raise ValueError(f"Password must be at least {MIN_PASSWORD} characters")
    if len(value) > MAX_PASSWORD:
        raise ValueError(f"Password must be at most {MAX_PASSWORD} characters")
    if is_common_password(value):
        raise ValueError("This password is too common; choose a less predictable one")
    return value


def check_given_password(value: str) -> str:
    """Passwords being checked, not set: only bounded, so nobody hashes a megabyte."""
    if not value:
        raise ValueError("Password is required")
    if len(value) > MAX_PASSWORD:
        raise ValueError(f"Password must be at most {MAX_PASSWORD} characters")
    return _printable(value, "Password")


def given_email(value: str) -> str:
    """An address a client gives to name an existing account (login, reset, resend): its key."""
    return email_key(_printable(value, "Email").strip())


def check_token(value: str) -> str:
    """Opaque tokens: non-empty and bounded."""
    if not value.strip() or len(value) > 8192:
        raise ValueError("Token is missing or malformed")
    return value.strip()


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
