"""Domain errors: what went wrong, with the status and message a client will see."""

from __future__ import annotations


class AppError(Exception):
    """An expected failure with the status and message a client sees."""

    status = 400
    message = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.errors = errors
        self.headers = headers or {}


class InvalidInput(AppError):
    message = "Invalid input"


class EmailTaken(AppError):
    message = "User already exists. Please login."


class InvalidCredentials(AppError):
    status = 401
    message = "Invalid email or password"


class TokenMissing(AppError):
    status = 401
    message = "Token is missing!"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class TokenInvalid(TokenMissing):
    message = "Token is invalid!"


class RefreshRaced(TokenInvalid):
    """A refresh token rotated moments ago by a concurrent request: refused, family intact."""


class Forbidden(AppError):
    status = 403
    message = "Forbidden"


class EmailNotVerified(AppError):
    status = 403
    message = (
        "Please verify your email address before logging in: "
        "follow the link we sent you, or ask for a new one at /verify/request."
    )


class NotFound(AppError):
    status = 404
    message = "Not found"


class InvalidMailToken(AppError):
    """A reset or verification token that is unknown, used, expired, stale or for another flow."""

    message = "Invalid or expired token"


class Throttled(AppError):
    status = 429
    message = "Too many attempts. Please try again later."

    def __init__(self, retry_after: int) -> None:
        super().__init__(headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = max(1, retry_after)


class ServiceUnavailable(AppError):
    status = 503
    message = "Service temporarily unavailable"
