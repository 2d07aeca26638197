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


class Conflict(AppError):
    """The request is valid but would break a rule about the current state of the data."""

    message = "Conflict"


class MfaRequired(Forbidden):
    """A right password on an account with a second factor: the login goes on at /login/mfa."""

    message = "Two-factor code required"
    methods = ("totp", "recovery_code")

    def __init__(self, mfa_token: str) -> None:
        super().__init__()
        self.mfa_token = mfa_token


class MfaEnrollmentRequired(Forbidden):
    """MFA_REQUIRED_ROLES names a role of this user, who has no second factor yet."""

    message = (
        "Two-factor authentication is required for your account: "
        "set it up (POST /me/mfa/totp, or the account page) first."
    )


class InvalidMfaCode(AppError):
    message = "Invalid two-factor code"


class MfaChallengeInvalid(InvalidMfaCode):
    """An mfa_token that is unknown, used, expired or out of attempts: log in again."""

    message = "Two-factor sign-in expired. Please log in again."


class ReauthRequired(AppError):
    """The sign-in behind the token is older than JWT_FRESH_SECONDS (RFC 9470)."""

    message = "Recent authentication required"

    def __init__(self, max_age: int) -> None:
        super().__init__()
        self.max_age = max_age


class LastAdmin(Conflict):
    """A change that would leave no active admin (SPEC §10)."""

    message = "The last active admin cannot be demoted or deactivated"


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
