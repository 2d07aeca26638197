"""Request and response models: the input rules of SPEC §7, shared by validation and OpenAPI."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Any, TypeVar

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError

from .common_passwords import is_common_password
from .errors import InvalidInput

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
# form of it differs only in the domain's case, if it is valid at all.
PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?!.*xn--)[A-Za-z0-9.-]+", re.IGNORECASE
)


def lookup_email(given: str) -> str:
    """The address an account is looked up by: normalised if valid, else as given.

    Lookups compare lower-cased, so a plain address is its own key and skips email-validator
    (a tenth of a millisecond on every login). A malformed address simply matches no account.
    """
    if PLAIN_EMAIL.fullmatch(given):
        return given
    try:
        return check_email(given)
    except ValueError:
        return given


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


def check_token(value: str) -> str:
    """Opaque tokens: non-empty and bounded."""
    if not value.strip() or len(value) > 8192:
        raise ValueError("Token is missing or malformed")
    return value.strip()


def _documented(**schema: Any) -> Any:
    """Constraints shown in OpenAPI only: the validators above decide, with their own messages."""
    return Field(json_schema_extra=schema)


Name = Annotated[
    StrictStr, AfterValidator(check_name), _documented(minLength=1, maxLength=MAX_NAME)
]
Email = Annotated[
    StrictStr, AfterValidator(check_email), _documented(format="email", maxLength=MAX_EMAIL)
]
NewPassword = Annotated[
    StrictStr,
    AfterValidator(check_new_password),
    _documented(minLength=MIN_PASSWORD, maxLength=MAX_PASSWORD),
]
GivenPassword = Annotated[
    StrictStr,
    AfterValidator(check_given_password),
    _documented(minLength=1, maxLength=MAX_PASSWORD),
]
# What a client gives to name an existing account (login, reset, resend): its lookup key.
GivenEmail = Annotated[
    StrictStr, AfterValidator(lambda v: lookup_email(_printable(v, "Email").strip()))
]
Token = Annotated[StrictStr, AfterValidator(check_token)]


class Input(BaseModel):
    # Unknown fields are ignored, never assigned.
    model_config = ConfigDict(extra="ignore", str_max_length=65_536)


class SignupIn(Input):
    name: Name
    email: Email
    password: NewPassword


class LoginIn(Input):
    email: GivenEmail
    password: GivenPassword


class RefreshIn(Input):
    refresh_token: Token | None = None


class UpdateMeIn(Input):
    name: Name


class ChangePasswordIn(Input):
    current_password: GivenPassword
    new_password: NewPassword


class DeleteMeIn(Input):
    password: GivenPassword


class ForgotPasswordIn(Input):
    email: GivenEmail


class ResetPasswordIn(Input):
    token: Token
    new_password: NewPassword


class VerifyEmailIn(Input):
    token: Token


class ResendVerificationIn(Input):
    # Only for callers who cannot sign in yet (REQUIRE_VERIFIED_EMAIL); signed-in callers send nothing.
    email: GivenEmail | None = None


class MessageOut(BaseModel):
    message: str


class ErrorOut(BaseModel):
    message: str
    errors: dict[str, str] | None = None


class UserOut(BaseModel):
    public_id: str
    name: str
    email: str


class MeOut(UserOut):
    email_verified: bool
    created_at: datetime


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int


class SessionOut(BaseModel):
    id: str
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    client_address: str | None
    current: bool


class SessionsOut(BaseModel):
    sessions: list[SessionOut]


class HealthOut(BaseModel):
    status: str


class JwksOut(BaseModel):
    """The public verification keys (JWK), empty when tokens are signed with HS256."""

    keys: list[dict[str, Any]]


M = TypeVar("M", bound=Input)

_REASONS = {
    "missing": "This field is required",
    "string_type": "Must be a string",
    "string_too_long": "Too long",
    # Lone surrogates ("\ud800" escaped in JSON) cannot be encoded: say so plainly.
    "string_unicode": "Contains invalid characters (lone surrogates)",
}


def parse_input(model: type[M], data: dict[str, Any]) -> M:
    """Validate a request body against a model; failures become one 400 with per-field reasons."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors(include_url=False, include_input=False):
            field = str(error["loc"][0]) if error["loc"] else "body"
            reason = _REASONS.get(error["type"]) or str(error["msg"]).removeprefix("Value error, ")
            errors.setdefault(field, reason)
        raise InvalidInput(_summary(errors), errors=errors) from None


def _summary(errors: dict[str, str]) -> str:
    if len(errors) == 1:
        field, reason = next(iter(errors.items()))
        return f"{field}: {reason}"
    return "Invalid input: " + ", ".join(sorted(errors))
