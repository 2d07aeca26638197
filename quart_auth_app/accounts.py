"""What a person does with their account: log in, confirm it is them, change or delete it.

Each action takes the request's database session and the caller's address as plain arguments;
the throttle counts wrong passwords here as it does for logins.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from .errors import (
    AccountDisabled,
    EmailNotVerified,
    InvalidCredentials,
    InvalidInput,
    InvalidMfaCode,
    MfaChallengeInvalid,
    MfaRequired,
)
from .mfa import WRONG_CODE, Enrollment, SecondFactor
from .models import User
from .passwords import PasswordHasher
from .sessions import PASSWORD_AND_OTP, PASSWORD_ONLY, SessionService, TokenPair
from .throttle import Throttle
from .users import authenticate, check_password, delete_user, set_password

MISMATCH_MESSAGE = "That password is not correct."
CODE_MISSING = "Enter the code from your authenticator app."


@dataclass(frozen=True)
class SecondStep:
    """A finished two-factor login: its tokens, the user, and whether a recovery code was spent."""

    tokens: TokenPair
    user: User
    used_recovery_code: bool


class Accounts:
    """Account actions on top of the hasher, the login sessions and the throttle."""

    def __init__(
        self,
        hasher: PasswordHasher,
        sessions: SessionService,
        throttle: Throttle,
        require_verified_email: bool,
        mfa: SecondFactor,
    ) -> None:
        self.hasher = hasher
        self.sessions = sessions
        self.throttle = throttle
        self.require_verified_email = require_verified_email
        self.mfa = mfa

    async def login(
        self, db: AsyncSession, email: str, password: str, address: str, user_agent: str | None
    ) -> TokenPair:
        """A new session for the right password: throttled per address and per (email, address)."""
        await self.throttle.check_failures(email, address)
        try:
            # The store's read, not the session's: no ORM transaction around the slow hash.
            found = await self.sessions.store.user_by_email(email)
            user = await authenticate(db, self.hasher, found, password)
        except InvalidCredentials:
            await self.throttle.record_failure(email, address)
            raise
        if not user.is_active:
            raise AccountDisabled()
        if self.require_verified_email and not user.email_verified:
            raise EmailNotVerified()
        # Asked only once the password is right: a wrong one never tells whether TOTP is on.
        if await self.mfa.enabled(db, user.id):
            # The failure count stays until the second factor succeeds: a stolen password
            # gives no more code guesses than the login throttle allows.
            raise MfaRequired(await self.mfa.open_challenge(db, user.id))
        # End that read before the login's write, which takes a connection of its own: behind a
        # pooler in transaction mode an open read holds a server connection all the while.
        await db.commit()
        await self.throttle.clear_failures(email, address)
        return await self.sessions.start(user, user_agent, address, PASSWORD_ONLY)

    async def finish_login(
        self,
        db: AsyncSession,
        mfa_token: str,
        code: str | None,
        recovery_code: str | None,
        address: str,
        user_agent: str | None,
    ) -> SecondStep:
        """Complete a login that answered mfa_required, with a TOTP or a recovery code."""
        user_id = await self.mfa.challenge_user(db, mfa_token)
        user = await db.get(User, user_id) if user_id is not None else None
        if user is None:
            raise MfaChallengeInvalid()
        await self.throttle.check_failures(user.email_key, address)
        if not await self._second_factor(db, user.id, code, recovery_code):
            await self.throttle.record_failure(user.email_key, address)
            await self.mfa.fail_challenge(db, mfa_token)
            raise InvalidMfaCode()
        if not await self.mfa.close_challenge(db, mfa_token):
            raise MfaChallengeInvalid()  # a concurrent request finished (or exhausted) it
        await self.throttle.clear_failures(user.email_key, address)
        tokens = await self.sessions.start(user, user_agent, address, PASSWORD_AND_OTP)
        return SecondStep(tokens, user, used_recovery_code=not code)

    async def _second_factor(
        self, db: AsyncSession, user_id: int, code: str | None, recovery_code: str | None
    ) -> bool:
        if code:
            return await self.mfa.enabled(db, user_id) and await self.mfa.check_totp(
                db, user_id, code
            )
        if recovery_code:
            return await self.mfa.use_recovery_code(db, user_id, recovery_code)
        return False

    async def reauthenticate(
        self,
        db: AsyncSession,
        user: User,
        session_id: str,
        password: str,
        code: str | None,
        address: str,
    ) -> TokenPair:
        """Fresh tokens for the same session once the password (and code, if TOTP is on) is right."""
        await self.confirm_password(db, user, password, address, "password")
        amr: tuple[str, ...] = PASSWORD_ONLY
        if await self.mfa.enabled(db, user.id):
            await self.confirm_code(db, user, code, address)
            amr = PASSWORD_AND_OTP
        return await self.sessions.reissue(db, user, session_id, amr)

    async def confirm_code(
        self, db: AsyncSession, user: User, code: str | None, address: str
    ) -> None:
        """Check a signed-in person's TOTP code; wrong ones count towards the login throttle."""
        if not code:
            raise InvalidInput(CODE_MISSING, errors={"code": CODE_MISSING})
        await self.throttle.check_failures(user.email_key, address)
        if not await self.mfa.check_totp(db, user.id, code):
            await self.throttle.record_failure(user.email_key, address)
            raise InvalidInput(WRONG_CODE, errors={"code": WRONG_CODE})

    async def enroll_totp(
        self, db: AsyncSession, user: User, password: str, address: str
    ) -> Enrollment:
        """A new TOTP secret to confirm, after the password."""
        await self.confirm_password(db, user, password, address, "password")
        return await self.mfa.begin(db, user)

    async def confirm_totp(
        self, db: AsyncSession, user: User, code: str, address: str
    ) -> list[str]:
        """Turn TOTP on with a first code; the recovery codes, to show once."""
        await self.throttle.check_failures(user.email_key, address)
        try:
            return await self.mfa.confirm(db, user.id, code)
        except InvalidInput:
            await self.throttle.record_failure(user.email_key, address)
            raise

    async def regenerate_codes(
        self, db: AsyncSession, user: User, code: str, address: str
    ) -> list[str]:
        """A new set of recovery codes for a current TOTP code."""
        await self.mfa.require_enabled(db, user.id)
        await self.confirm_code(db, user, code, address)
        return await self.mfa.regenerate(db, user.id)

    async def disable_totp(
        self, db: AsyncSession, user: User, password: str, code: str, address: str
    ) -> None:
        """Turn TOTP off after the password and a current code."""
        await self.mfa.require_enabled(db, user.id)
        await self.confirm_password(db, user, password, address, "password")
        await self.confirm_code(db, user, code, address)
        await self.mfa.disable(db, user.id)

    async def confirm_password(
        self, db: AsyncSession, user: User, password: str, address: str, field: str
    ) -> None:
        """Check a signed-in person's password; wrong ones count towards the login throttle."""
        await self.throttle.check_failures(user.email_key, address)
        try:
            await check_password(db, self.hasher, user, password)
        except InvalidCredentials:
            # Not a 401, which would send a signed-in person to the login page: a form error.
            await self.throttle.record_failure(user.email_key, address)
            raise InvalidInput(MISMATCH_MESSAGE, errors={field: MISMATCH_MESSAGE}) from None

    async def change_password(
        self, db: AsyncSession, user: User, current: str, new: str, address: str, keep: str
    ) -> None:
        """Replace the password after checking the current one; every session but `keep` ends."""
        await self.confirm_password(db, user, current, address, "current_password")
        await set_password(db, self.hasher, user, new)
        await self.sessions.revoke_all(db, user.id, keep=keep)

    async def delete(self, db: AsyncSession, user: User, password: str, address: str) -> None:
        """Remove the account after checking the password; every session ends first."""
        await self.confirm_password(db, user, password, address, "password")
        await self.sessions.revoke_all(db, user.id)
        await delete_user(db, user)
