"""Domain errors: what went wrong, in the words a client will read. HTTP lives in web/errors.py."""

from __future__ import annotations


class AppError(Exception):
    """An expected failure, with the message (and per-field reasons) a client sees."""

    message = "Bad request"

    def __init__(self, message: str | None = None, *, errors: dict[str, str] | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.errors = errors


class InvalidInput(AppError):
    message = "Invalid input"


class EmailTaken(AppError):
    message = "User already exists. Please login."


class InvalidCredentials(AppError):
    message = "Invalid email or password"


class TokenMissing(AppError):
    message = "Token is missing!"


class TokenInvalid(TokenMissing):
    message = "Token is invalid!"


class RefreshRaced(TokenInvalid):
    """A refresh token rotated moments ago by a concurrent request: refused, family intact."""


class Forbidden(AppError):
    message = "Forbidden"


class EmailNotVerified(Forbidden):
    message = (
        "Please verify your email address before logging in: "
        "follow the link we sent you, or ask for a new one at /verify/request."
    )


class AccountDisabled(Forbidden):
    """The right password for a deactivated account (told only after the password matched)."""

    message = "Account disabled"


class InsufficientPermissions(Forbidden):
    """A valid caller without a role or scope the route needs (RFC 6750 §3.1)."""

    message = "Insufficient permissions"

    def __init__(self, needed: tuple[str, ...]) -> None:
        super().__init__()
        self.needed = needed


class SessionRequired(InsufficientPermissions):
    """A personal access token on a route only a login session may use (SPEC §10)."""

    message = "A personal access token cannot do this: sign in with your password"

    def __init__(self) -> None:
        super().__init__(())


class NotFound(AppError):
    message = "Not found"


class InvalidMailToken(AppError):
    """A reset or verification token that is unknown, used, expired, stale or for another flow."""

    message = "Invalid or expired token"


class Throttled(AppError):
    message = "Too many attempts. Please try again later."

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = max(1, retry_after)


class ServiceUnavailable(AppError):
    message = "Service temporarily unavailable"
