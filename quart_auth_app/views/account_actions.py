"""The account actions that the JSON routes and the browser's account page share."""

from __future__ import annotations

from ..auth import current_claims
from ..db import request_session
from ..errors import InvalidCredentials, InvalidInput
from ..models import User
from ..services import services
from ..users import check_password, delete_user, set_password
from .forms import caller_address

MISMATCH_MESSAGE = "That password is not correct."


async def confirm_password(user: User, password: str, field: str) -> None:
    """Check the person's password; wrong ones count towards the login throttle like a login."""
    throttle, address = services().throttle, caller_address()
    await throttle.check_failures(user.email, address)
    try:
        await check_password(request_session(), services().hasher, user, password)
    except InvalidCredentials:
        # A 401 would send a signed-in person to the login page: this is a form error instead.
        await throttle.record_failure(user.email, address)
        raise InvalidInput(MISMATCH_MESSAGE, errors={field: MISMATCH_MESSAGE}) from None


async def change_password(user: User, current: str, new: str) -> None:
    """Replace the password after checking the current one; every other session ends."""
    await confirm_password(user, current, "current_password")
    db = request_session()
    await set_password(db, services().hasher, user, new)
    await services().sessions.revoke_all(db, user.id, keep=current_claims().session_id)


async def delete_account(user: User, password: str) -> None:
    """Remove the account after checking the password; every session ends first."""
    await confirm_password(user, password, "password")
    db = request_session()
    await services().sessions.revoke_all(db, user.id)
    await delete_user(db, user)
