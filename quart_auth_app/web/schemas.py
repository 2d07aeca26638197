"""Request and response models: the input rules of SPEC §7, shared by validation and OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
)

from ..access_tokens import MAX_LIFETIME_DAYS
from ..admin import DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY
from ..errors import InvalidInput
from ..permissions import checked_names
from ..rules import (
    MAX_EMAIL,
    MAX_NAME,
    MAX_PASSWORD,
    MIN_PASSWORD,
    check_email,
    check_given_password,
    check_name,
    check_new_password,
    check_token,
    given_email,
)


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
GivenEmail = Annotated[StrictStr, AfterValidator(given_email)]
Token = Annotated[StrictStr, AfterValidator(check_token)]


def _split_roles(value: Any) -> Any:
    """A form sends one text field: "admin, auditor" (commas or spaces) is two roles."""
    return value.replace(",", " ").split() if isinstance(value, str) else value


def _checked_roles(value: list[str]) -> list[str]:
    return sorted(checked_names(value, "role"))


# The whole set of a user's roles, each name checked (permissions.NAME), sorted, no repeats.
Roles = Annotated[list[StrictStr], BeforeValidator(_split_roles), AfterValidator(_checked_roles)]


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


# A TOTP code (6 digits) or a recovery code (xxxx-xxxx-xxxx-xxxx); what is not one is refused
# as a wrong code, which says nothing more.
Code = Annotated[StrictStr, Field(max_length=64)]


class TotpEnrollIn(Input):
    password: GivenPassword


class TotpCodeIn(Input):
    code: Code


class TotpDisableIn(Input):
    password: GivenPassword
    code: Code


class LoginMfaIn(Input):
    """The mfa_token from the login's 403, and either a TOTP `code` or a `recovery_code`."""

    mfa_token: Token
    code: Code | None = None
    recovery_code: Code | None = None


class ReauthIn(Input):
    """The password, and a TOTP `code` when two-factor authentication is on."""

    password: GivenPassword
    code: Code | None = None


class RecoveryCodesDownloadIn(Input):
    codes: Annotated[StrictStr, Field(max_length=1024)]


class AdminUsersQuery(Input):
    q: str = Field("", max_length=MAX_QUERY, description="name or email contains (any case)")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str = Field("", max_length=200, description="next_cursor of the previous page")


class AdminUserIn(Input):
    """Any of the fields; `roles` replaces the user's roles with exactly these."""

    roles: Roles | None = None
    is_active: bool | None = None
    name: Name | None = None


def _scope_names(value: Any) -> Any:
    """A list of scope names, or one string of them separated by spaces (as OAuth's `scope`)."""
    return value.split() if isinstance(value, str) else value


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value  # a form's "never expires" choice


class NewAccessTokenIn(Input):
    name: Name
    scopes: Annotated[
        list[StrictStr], BeforeValidator(_scope_names), Field(min_length=1, max_length=50)
    ]
    expires_in_days: Annotated[
        Annotated[int, Field(ge=1, le=MAX_LIFETIME_DAYS)] | None, BeforeValidator(_blank_is_none)
    ] = None


class AccessTokenOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class NewAccessTokenOut(BaseModel):
    """The token just made: `token` is its secret, shown this once and never again."""

    id: str
    name: str
    token: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None


class AccessTokensOut(BaseModel):
    """The caller's live tokens (no secrets), and the scopes a new one may be given."""

    tokens: list[AccessTokenOut]
    known_scopes: list[str]


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


class AdminUserOut(MeOut):
    is_active: bool
    roles: list[str]


class AdminUsersOut(BaseModel):
    users: list[AdminUserOut]
    next_cursor: str | None


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int


class MfaRequiredOut(BaseModel):
    """A right password on an account with a second factor: finish at POST /login/mfa."""

    message: str
    mfa_required: bool
    mfa_token: str
    methods: list[str]


class TotpEnrollmentOut(BaseModel):
    secret: str
    otpauth_uri: str


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


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
    """`ok`, or `unavailable` with what failed: `checks` maps database/redis to a reason."""

    status: str
    checks: dict[str, str] | None = None


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
    "too_short": "Choose at least one",
    "list_type": "Must be a list of strings, or one string of names separated by spaces",
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
