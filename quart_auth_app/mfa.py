"""The second factor: TOTP secrets (RFC 6238), recovery codes and pending MFA sign-ins.

Every function takes the request's database session and plain arguments; the time comes from
the injected clock, so tests drive it. Secrets are Fernet-encrypted at rest (MultiFernet: the
first key encrypts, every key decrypts, and a secret read with an older key is written back
under the first); recovery codes and mfa_tokens are stored as SHA-256 digests (both carry at
least 80 random bits, so a digest cannot be reversed by guessing).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pyotp.exceptions import OTPVerificationError
from sqlalchemy import ColumnElement, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .config import Settings
from .errors import Conflict, InvalidInput, ServiceUnavailable
from .models import MfaChallenge, RecoveryCode, User, UserTotp
from .tokens import token_digest

RECOVERY_CODES = 10
CHALLENGE_LIFETIME = timedelta(minutes=5)
CHALLENGE_ATTEMPTS = 5
# RFC 6238 with the parameters every authenticator app assumes: SHA-1, 6 digits, 30 s.
INTERVAL = 30
DIGITS = 6
# Accept the previous and the next step too: clocks drift, people type slowly.
VALID_WINDOW = 1
HKDF_INFO = b"quart_auth_app mfa secrets v1"
ALREADY_ON = "Two-factor authentication is already on."
NOT_ON = "Two-factor authentication is not on."
NOT_STARTED = "Start the set-up first: POST /me/mfa/totp with your password."
WRONG_CODE = "That code is not correct (or was already used)."

Clock = Callable[[], float]


def derived_key(secret_key: str) -> bytes:
    """The Fernet key for TOTP secrets when MFA_ENCRYPTION_KEY is not set (HKDF of SECRET_KEY)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


def code_digest(code: str) -> bytes:
    """The digest stored for a recovery code (typed with or without dashes, any case)."""
    return hashlib.sha256(normalize_recovery_code(code).encode()).digest()


def normalize_recovery_code(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def new_recovery_code() -> str:
    """Sixteen base32 characters (80 bits) in four groups: xxxx-xxxx-xxxx-xxxx."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True)
class Enrollment:
    """What a person copies into an authenticator app."""

    secret: str
    otpauth_uri: str


class SecretBox:
    """Encrypts TOTP secrets; several keys for rotation, the first one encrypts."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._current = Fernet(keys[0])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(settings.mfa_encryption_keys or (derived_key(settings.secret_key),))

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def open(self, sealed: bytes) -> tuple[str, bool]:
        """The secret, and whether it was sealed with an older key (so should be sealed again)."""
        try:
            secret = self._fernet.decrypt(sealed).decode()
        except InvalidToken:
            # A key was dropped from MFA_ENCRYPTION_KEY (or SECRET_KEY changed): the operator's
            # mistake, not the person's; they must not be told their code is wrong.
            raise ServiceUnavailable(
                "TOTP secret cannot be decrypted with the configured keys"
            ) from None
        try:
            self._current.decrypt(sealed)
        except InvalidToken:
            return secret, True
        return secret, False


class SecondFactor:
    """TOTP enrollment and checks, recovery codes and MFA challenges, on the database."""

    def __init__(self, box: SecretBox, issuer: str, clock: Clock = time.time) -> None:
        self.box = box
        self.issuer = issuer
        self.clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def enabled(self, db: AsyncSession, user_id: int) -> bool:
        """Whether the user has a confirmed TOTP secret."""
        confirmed = await db.scalar(
            select(UserTotp.confirmed_at).where(UserTotp.user_id == user_id)
        )
        return confirmed is not None

    async def begin(self, db: AsyncSession, user: User) -> Enrollment:
        """A new, unconfirmed secret for the user (replacing an unconfirmed one)."""
        if await self.enabled(db, user.id):
            raise Conflict(ALREADY_ON)
        secret = pyotp.random_base32()
        await db.execute(delete(UserTotp).where(UserTotp.user_id == user.id))
        db.add(UserTotp(user_id=user.id, secret=self.box.seal(secret), created_at=self._now()))
        await db.commit()
        return self._enrollment(secret, user)

    async def pending(self, db: AsyncSession, user: User) -> Enrollment | None:
        """The set-up waiting for its first code, if there is one (to show the QR code again)."""
        row = await db.get(UserTotp, user.id)
        if row is None or row.confirmed_at is not None:
            return None
        return self._enrollment(self.box.open(row.secret)[0], user)

    def _enrollment(self, secret: str, user: User) -> Enrollment:
        uri = _totp(secret).provisioning_uri(name=user.email, issuer_name=self.issuer)
        return Enrollment(secret, uri)

    async def confirm(self, db: AsyncSession, user_id: int, code: str) -> list[str]:
        """Turn TOTP on with a first good code; returns the recovery codes (shown once)."""
        row = await db.get(UserTotp, user_id)
        if row is None:
            raise Conflict(NOT_STARTED)
        if row.confirmed_at is not None:
            raise Conflict(ALREADY_ON)
        if not await self._accept_code(db, row, code):
            raise _wrong_code()
        row.confirmed_at = self._now()
        return await self._new_codes(db, user_id)

    async def regenerate(self, db: AsyncSession, user_id: int) -> list[str]:
        """A new set of recovery codes (the caller checked a code); the old set stops working."""
        await self._confirmed(db, user_id)
        return await self._new_codes(db, user_id)

    async def disable(self, db: AsyncSession, user_id: int) -> None:
        """Turn TOTP off (the caller checked password and code): secret and codes are deleted."""
        await self._confirmed(db, user_id)
        await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        await db.execute(delete(UserTotp).where(UserTotp.user_id == user_id))
        await db.commit()

    async def check_totp(self, db: AsyncSession, user_id: int, code: str) -> bool:
        """Whether `code` is a current TOTP code of the user not used before (commits if so)."""
        row = await self._confirmed(db, user_id)
        accepted = await self._accept_code(db, row, code)
        await db.commit()
        return accepted

    async def use_recovery_code(self, db: AsyncSession, user_id: int, code: str) -> bool:
        """Spend one of the user's unused recovery codes; False if it is not one."""
        won = await db.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.digest == code_digest(code),
                RecoveryCode.user_id == user_id,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=self._now())
        )
        await db.commit()
        return bool(won.rowcount == 1)  # type: ignore[attr-defined]

    async def codes_are_live(self, db: AsyncSession, user_id: int, codes: Sequence[str]) -> bool:
        """Whether every code is one of the user's unused recovery codes."""
        digests = {code_digest(code) for code in codes}
        found = await db.scalars(
            select(RecoveryCode.digest).where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.used_at.is_(None),
                RecoveryCode.digest.in_(digests),
            )
        )
        return bool(digests) and set(found) == digests

    async def remaining_codes(self, db: AsyncSession, user_id: int) -> int:
        found = await db.scalars(
            select(RecoveryCode.digest).where(
                RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
            )
        )
        return len(list(found))

    async def open_challenge(self, db: AsyncSession, user_id: int) -> str:
        """An mfa_token for a right password; only its digest is stored."""
        token = secrets.token_urlsafe(32)
        row = {
            "digest": token_digest(token),
            "user_id": user_id,
            "expires_at": self._now() + CHALLENGE_LIFETIME,
            "attempts": 0,
            "used_at": None,
        }
        await db.execute(insert(MfaChallenge), [row])
        await db.commit()
        return token

    async def challenge_user(self, db: AsyncSession, token: str) -> int | None:
        """The user id of a live challenge (unused, unexpired, attempts left), else None."""
        user_id = await db.scalar(select(MfaChallenge.user_id).where(*self._live(token)))
        await db.rollback()  # nothing was written: end the read before the slow parts
        return user_id

    async def fail_challenge(self, db: AsyncSession, token: str) -> None:
        """Count one wrong code against the challenge (the fifth kills it)."""
        await db.execute(
            update(MfaChallenge)
            .where(MfaChallenge.digest == token_digest(token))
            .values(attempts=MfaChallenge.attempts + 1)
        )
        await db.commit()

    async def close_challenge(self, db: AsyncSession, token: str) -> bool:
        """Use the challenge up; False if another request (or time) got there first."""
        won = await db.execute(
            update(MfaChallenge).where(*self._live(token)).values(used_at=self._now())
        )
        await db.commit()
        return bool(won.rowcount == 1)  # type: ignore[attr-defined]

    async def cleanup(self, db: AsyncSession) -> int:
        """Delete challenges that can no longer be used."""
        gone = await db.execute(delete(MfaChallenge).where(MfaChallenge.expires_at < self._now()))
        await db.commit()
        return int(gone.rowcount)  # type: ignore[attr-defined]

    def _live(self, token: str) -> tuple[ColumnElement[bool], ...]:
        return (
            MfaChallenge.digest == token_digest(token),
            MfaChallenge.used_at.is_(None),
            MfaChallenge.expires_at > self._now(),
            MfaChallenge.attempts < CHALLENGE_ATTEMPTS,
        )

    async def require_enabled(self, db: AsyncSession, user_id: int) -> None:
        """Conflict (409) unless TOTP is on for the user."""
        await self._confirmed(db, user_id)

    async def _confirmed(self, db: AsyncSession, user_id: int) -> UserTotp:
        row = await db.get(UserTotp, user_id)
        if row is None or row.confirmed_at is None:
            raise Conflict(NOT_ON)
        return row

    async def _accept_code(self, db: AsyncSession, row: UserTotp, code: str) -> bool:
        """Match the code within ±1 step and record its step; a step already used is refused.

        The step is written with a conditional update, so two requests racing with one code
        cannot both win (the caller commits).
        """
        secret, stale = self.box.open(row.secret)
        step = matching_step(secret, code, self.clock())
        if step is None or (row.last_step is not None and step <= row.last_step):
            return False
        values: dict[str, object] = {"last_step": step}
        if stale:
            values["secret"] = self.box.seal(secret)  # key rotation: re-seal with the first key
        won = await db.execute(
            update(UserTotp)
            .where(
                UserTotp.user_id == row.user_id,
                (UserTotp.last_step.is_(None)) | (UserTotp.last_step < step),
            )
            .values(**values)
            .execution_options(synchronize_session="fetch")
        )
        return bool(won.rowcount == 1)  # type: ignore[attr-defined]

    async def _new_codes(self, db: AsyncSession, user_id: int) -> list[str]:
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        rows = [
            {"digest": code_digest(code), "user_id": user_id, "used_at": None} for code in codes
        ]
        await db.execute(insert(RecoveryCode), rows)
        await db.commit()
        return codes


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)


def matching_step(secret: str, code: str, at: float) -> int | None:
    """The time step (within ±VALID_WINDOW of `at`) whose code `code` is, else None."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isdigit():
        return None
    try:
        return _totp(secret).verify_and_get_timecode(code, for_time=at, valid_window=VALID_WINDOW)
    except OTPVerificationError:
        return None


def _wrong_code() -> InvalidInput:
    return InvalidInput(WRONG_CODE, errors={"code": WRONG_CODE})
