"""What a person does with their account: log in, confirm it is them, change or delete it.

Each action takes the request's database session and the caller's address as plain arguments;
the throttle counts wrong passwords here as it does for logins.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from .errors import AccountDisabled, EmailNotVerified, InvalidCredentials, InvalidInput
from .models import User
from .passwords import PasswordHasher
from .sessions import SessionService, TokenPair
from .throttle import Throttle
from .users import authenticate, check_password, delete_user, set_password

MISMATCH_MESSAGE = "That password is not correct."


class Accounts:
    """Account actions on top of the hasher, the login sessions and the throttle."""

    def __init__(
        self,
        hasher: PasswordHasher,
        sessions: SessionService,
        throttle: Throttle,
        require_verified_email: bool,
    ) -> None:
        self.hasher = hasher
        self.sessions = sessions
        self.throttle = throttle
        self.require_verified_email = require_verified_email

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
        await self.throttle.clear_failures(email, address)
        return await self.sessions.start(user, user_agent, address)

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
