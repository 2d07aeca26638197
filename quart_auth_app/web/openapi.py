"""OpenAPI for every JSON route (quart-schema), served at /openapi.json, with a page at /docs.

Bodies are validated by views/forms.form_input with the same pydantic models documented here,
so the description and the behaviour share one source. The documentation of each endpoint
lives in DOCS below and is attached to the view functions when the app is built: views stay
thin, and tests/test_openapi.py fails when a JSON route is missing from this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel
from quart import Quart
from quart_schema import (
    APIKeySecurityScheme,
    DataSource,
    HttpSecurityScheme,
    Info,
    OpenAPIProvider,
    QuartSchema,
    document_querystring,
    document_request,
    document_response,
    hide,
    security_scheme,
    tag,
)

from . import docs_ui
from .schemas import (
    AccessTokensOut,
    AdminUserIn,
    AdminUserOut,
    AdminUsersOut,
    AdminUsersQuery,
    ChangePasswordIn,
    DeleteMeIn,
    ErrorOut,
    ForgotPasswordIn,
    HealthOut,
    JwksOut,
    LoginIn,
    LoginMfaIn,
    MeOut,
    MessageOut,
    MfaRequiredOut,
    NewAccessTokenIn,
    NewAccessTokenOut,
    ReauthIn,
    RecoveryCodesOut,
    RefreshIn,
    ResendVerificationIn,
    ResetPasswordIn,
    SessionsOut,
    SignupIn,
    TokensOut,
    TotpCodeIn,
    TotpDisableIn,
    TotpEnrollIn,
    TotpEnrollmentOut,
    UpdateMeIn,
    UserOut,
    VerifyEmailIn,
)

NO_CONTENT = 204
BEARER: list[dict[str, list[str]]] = [{"bearer": []}, {"cookie": []}]
# What a fresh-only route (token_required(fresh=True)) adds to its description.
FRESH_TEXT = (
    "Needs a sign-in within JWT_FRESH_SECONDS: an older one answers 401 `Recent authentication "
    'required` with `WWW-Authenticate: Bearer error="insufficient_user_authentication", '
    "max_age=…` (RFC 9470); POST /reauth makes the session fresh again."
)
ERROR_TEXT = {
    400: "Invalid input, malformed body or unsupported content type",
    401: "Missing, invalid, expired or revoked token, or wrong credentials",
    403: "Cross-origin request refused, email not verified, account disabled, a role or scope "
    "missing (WWW-Authenticate names it), or a personal access token where a login session is "
    "needed",
    404: "Not found",
    409: "Refused by the current state: two-factor authentication already on (or not on), or "
    "the change would leave no active admin",
    413: "Request body too large (limit 64 KiB)",
    429: "Too many attempts: see Retry-After",
    503: "A backing store (database, revocation list) cannot be reached",
}
BODY_ERRORS = (400, 403, 413)
# 403: a role or scope the route needs, or a personal access token where a session is needed.
AUTH_ERRORS = (401, 403, 503)
AUTH_BODY_ERRORS = (400, 413, *AUTH_ERRORS)
# Admin routes: 403 for a caller without the admin role (or a token without the scope).
ADMIN_ERRORS = AUTH_ERRORS
ADMIN_TEXT = (
    "Needs the `admin` role (read on every request); a personal access token also needs the "
    "`admin` scope. Without them: 403 with "
    '`WWW-Authenticate: Bearer error="insufficient_scope", scope="admin"`.'
)


class VerifyLinkQuery(BaseModel):
    """The token from a verification link."""

    token: str


@dataclass(frozen=True)
class Doc:
    """The documentation of one endpoint (the views' own code decides the behaviour)."""

    summary: str
    tag: str
    ok: tuple[int, type[BaseModel] | None]
    errors: tuple[int, ...] = ()
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    auth: bool = False
    anonymous_too: bool = False  # credentials optional: without them the body decides
    html_too: bool = False  # browsers get a page (or a redirect) from the same route
    body_required: bool = False  # required although every field is optional (at least one)
    description: str = ""
    extra: dict[int, type[BaseModel]] = field(default_factory=dict)


DOCS: dict[str, Doc] = {
    "pages.signup": Doc(
        "Register a user (tutorial route)",
        "tutorial",
        (201, UserOut),
        (*BODY_ERRORS, 429, 503),
        SignupIn,
        html_too=True,
    ),
    "pages.login": Doc(
        "Log in: an access and a refresh token (browsers get cookies)",
        "tutorial",
        (200, TokensOut),
        (*BODY_ERRORS, 401, 429),
        LoginIn,
        html_too=True,
        description=(
            "For an account with two-factor authentication, a right password answers 403 "
            "with `mfa_required` and an `mfa_token` (valid 5 minutes) instead of tokens: "
            "finish at POST /login/mfa."
        ),
        extra={403: MfaRequiredOut},
    ),
    "mfa.login_mfa": Doc(
        "Finish a two-factor login with a TOTP `code` or a `recovery_code`",
        "tutorial",
        (200, TokensOut),
        (*BODY_ERRORS, 401, 429),
        LoginMfaIn,
        html_too=True,
        description=(
            "401 `Invalid two-factor code` for a wrong code (five kill the mfa_token); 401 "
            "`Two-factor sign-in expired. Please log in again.` for an mfa_token that is "
            "unknown, used, expired or out of attempts. A TOTP code is accepted once."
        ),
    ),
    "mfa.reauth": Doc(
        "Step up: fresh tokens for this session after the password (and code when TOTP is on)",
        "tokens",
        (200, TokensOut),
        (*BODY_ERRORS, *AUTH_ERRORS, 429),
        ReauthIn,
        auth=True,
        html_too=True,
        description=(
            "The new tokens carry `auth_time` = now, so routes that want a recent sign-in "
            "(401 `Recent authentication required`, `WWW-Authenticate: Bearer "
            'error="insufficient_user_authentication", max_age=…`) accept them.'
        ),
    ),
    "mfa.enroll": Doc(
        "Start TOTP set-up (password required): the secret and its otpauth:// URI",
        "two-factor",
        (200, TotpEnrollmentOut),
        (*BODY_ERRORS, *AUTH_ERRORS, 409, 429),
        TotpEnrollIn,
        auth=True,
    ),
    "mfa.confirm": Doc(
        "Turn TOTP on with a first code: ten recovery codes, shown once",
        "two-factor",
        (200, RecoveryCodesOut),
        (*BODY_ERRORS, *AUTH_ERRORS, 409, 429),
        TotpCodeIn,
        auth=True,
    ),
    "mfa.regenerate": Doc(
        "A new set of recovery codes for a current TOTP code; the old set stops working",
        "two-factor",
        (200, RecoveryCodesOut),
        (*BODY_ERRORS, *AUTH_ERRORS, 409, 429),
        TotpCodeIn,
        auth=True,
    ),
    "mfa.disable": Doc(
        "Turn TOTP off (password and code; needs a recent sign-in)",
        "two-factor",
        (NO_CONTENT, None),
        (*BODY_ERRORS, *AUTH_ERRORS, 409, 429),
        TotpDisableIn,
        auth=True,
    ),
    "pages.dashboard": Doc(
        "The tutorial's protected page",
        "tutorial",
        (200, MessageOut),
        AUTH_ERRORS,
        auth=True,
        html_too=True,
    ),
    "tokens.refresh": Doc(
        "Rotate a refresh token (JSON body or refresh cookie) into a new token pair",
        "tokens",
        (200, TokensOut),
        (*BODY_ERRORS, 401, 503),
        RefreshIn,
        html_too=True,
    ),
    "tokens.logout": Doc(
        "Revoke this access token and its refresh family; clears the cookies",
        "tokens",
        (200, MessageOut),
        AUTH_ERRORS,
        auth=True,
        html_too=True,
    ),
    "tokens.logout_all": Doc(
        "Revoke every token of the user",
        "tokens",
        (200, MessageOut),
        AUTH_ERRORS,
        auth=True,
        html_too=True,
    ),
    "tokens.list_sessions": Doc(
        "The user's live sessions (one per refresh family)",
        "sessions",
        (200, SessionsOut),
        AUTH_ERRORS,
        auth=True,
    ),
    "tokens.revoke_session": Doc(
        "Revoke one session and its access tokens",
        "sessions",
        (NO_CONTENT, None),
        (*AUTH_ERRORS, 404),
        auth=True,
    ),
    "tokens.jwks": Doc("Public keys for asymmetric algorithms (JWKS)", "tokens", (200, JwksOut)),
    "account.me": Doc("The signed-in user", "account", (200, MeOut), AUTH_ERRORS, auth=True),
    "account.update_me": Doc(
        "Rename the signed-in user",
        "account",
        (200, MeOut),
        AUTH_BODY_ERRORS,
        UpdateMeIn,
        auth=True,
    ),
    "account.change_password": Doc(
        "Change the password; every other session is revoked",
        "account",
        (NO_CONTENT, None),
        (*AUTH_BODY_ERRORS, 429),
        ChangePasswordIn,
        auth=True,
    ),
    "account.delete_me": Doc(
        "Delete the account (password required); every token stops working",
        "account",
        (NO_CONTENT, None),
        (*AUTH_BODY_ERRORS, 429),
        DeleteMeIn,
        auth=True,
    ),
    "recovery.forgot": Doc(
        "Mail a password-reset link (202 whether or not the account exists)",
        "recovery",
        (202, MessageOut),
        (*BODY_ERRORS, 429, 503),
        ForgotPasswordIn,
        html_too=True,
    ),
    "recovery.reset": Doc(
        "Set a new password with a mailed token; every session is revoked",
        "recovery",
        (NO_CONTENT, None),
        (*BODY_ERRORS, 429),
        ResetPasswordIn,
        html_too=True,
    ),
    "recovery.verify_link": Doc(
        "Verify the email address from the mailed link",
        "recovery",
        (200, MessageOut),
        (400, 429),
        query=VerifyLinkQuery,
        description=(
            "API clients get JSON: 200 once the address is verified; 400 when the token is "
            "missing or empty (`errors.token`), or unknown, used or expired. Browsers (Accept "
            "preferring text/html, as when a person opens the link) get an HTML page instead, "
            "with the same status; without a token, that page asks for one."
        ),
    ),
    "recovery.verify": Doc(
        "Verify the email address with a mailed token",
        "recovery",
        (200, MessageOut),
        (*BODY_ERRORS, 429),
        VerifyEmailIn,
        html_too=True,
    ),
    "recovery.request_verification": Doc(
        "Send the verification link again (signed in, or naming the address)",
        "recovery",
        (202, MessageOut),
        (*AUTH_BODY_ERRORS, 429),
        ResendVerificationIn,
        auth=True,
        anonymous_too=True,
        html_too=True,
    ),
    "admin.list_users": Doc(
        "Search users by name or email (admin), a page at a time",
        "admin",
        (200, AdminUsersOut),
        (400, *ADMIN_ERRORS),
        query=AdminUsersQuery,
        auth=True,
        description=f"{ADMIN_TEXT} Oldest first; `limit` 1-200 (default 50); pass `next_cursor` "
        "back as `cursor` for the next page (null on the last). The search matches a substring "
        "of the name or email, ignoring case; % and _ are literal characters. A cursor that "
        "this server did not issue for this `q` is 400.",
    ),
    "admin.get_user": Doc(
        "One user (admin)",
        "admin",
        (200, AdminUserOut),
        (*ADMIN_ERRORS, 404),
        auth=True,
        description=ADMIN_TEXT,
    ),
    "admin.update_user": Doc(
        "Change a user's roles (the whole list), activity or name (admin)",
        "admin",
        (200, AdminUserOut),
        (*BODY_ERRORS, *ADMIN_ERRORS, 404, 409),
        AdminUserIn,
        auth=True,
        body_required=True,
        description=f"{ADMIN_TEXT} Give at least one field. `is_active: false` ends every "
        "session of the user at once (their tokens answer 401, refresh is refused, login says "
        "`Account disabled`); `true` lets them log in again but brings no session back. "
        "Demoting or deactivating the last active admin is refused with 409. "
        f"{FRESH_TEXT}",
    ),
    "admin.logout_user": Doc(
        "End every session of a user (admin)",
        "admin",
        (200, MessageOut),
        (*ADMIN_ERRORS, 404),
        auth=True,
        description=f"{ADMIN_TEXT} {FRESH_TEXT}",
    ),
    "access_tokens.create_token": Doc(
        "Make a personal access token; its secret is in this answer only",
        "access tokens",
        (201, NewAccessTokenOut),
        AUTH_BODY_ERRORS,
        NewAccessTokenIn,
        auth=True,
        description=(
            "Only a login session may call this (a personal access token gets 403). `scopes`: "
            "a non-empty list (or one space-separated string) of `profile:read`, "
            "`profile:write`, `sessions`, `admin` and any scope a route of the app declares; "
            "`expires_in_days`: 1 to 365, or absent for a token that does not expire. At most "
            "50 live tokens per account (400 beyond). Send the token as "
            "`Authorization: Bearer qaa_pat_...`."
        ),
    ),
    "access_tokens.list_tokens": Doc(
        "The caller's live personal access tokens (never their secrets)",
        "access tokens",
        (200, AccessTokensOut),
        AUTH_ERRORS,
        auth=True,
        description=(
            "Only a login session may call this. `last_used_at` is written at most once a "
            "minute per token, so it may lag a use by up to a minute; `known_scopes` lists "
            "what a new token may be given."
        ),
    ),
    "access_tokens.revoke_token": Doc(
        "Revoke one of the caller's personal access tokens (refused on the next request)",
        "access tokens",
        (NO_CONTENT, None),
        (*AUTH_ERRORS, 404),
        auth=True,
        description="Only a login session may call this; 404 for a token unknown or not yours.",
    ),
    "ops.healthz": Doc(
        "Health: do the database (at this code's schema) and Redis answer?",
        "operations",
        (200, HealthOut),
        extra={503: HealthOut},
    ),
}

# Routes that only ever serve browsers (pages and form posts answered with redirects).
HTML_ONLY = frozenset(
    {
        "static",
        "pages.login_page",
        "pages.signup_page",
        "recovery.forgot_page",
        "recovery.reset_page",
        "browser.account",
        "browser.change_name",
        "browser.change_password",
        "browser.revoke_session",
        "browser.create_token",
        "browser.revoke_token",
        "browser.delete_account",
        "mfa.reauth_page",
        "mfa_page.setup",
        "mfa_page.confirm",
        "mfa_page.regenerate",
        "mfa_page.download_codes",
        "mfa_page.disable",
        "admin_page.admin_page",
        "admin_page.set_active",
        "admin_page.set_roles",
    }
)


class Provider(OpenAPIProvider):
    """quart-schema's generator, plus summaries, form bodies, 204s and HTML alternatives."""

    def build_paths(self, rule: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        doc = DOCS.get(rule.endpoint)
        if doc is not None:
            for operation in next(iter(paths.values())).values():
                _complete(operation, doc)
        return paths, components

    def build_request_body(
        self, model: Any, source: DataSource
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        body, components = super().build_request_body(model, source)
        schema = body["content"]["application/json"]["schema"]
        for encoding in ("application/x-www-form-urlencoded", "multipart/form-data"):
            body["content"][encoding] = {"schema": schema}
        body["required"] = True
        return body, components


REDIRECT_TEXT = (
    "Browsers (Accept: text/html) are redirected; so is a form post to /signup, /login or "
    "/logout that does not ask for application/json (the tutorial's clients)"
)


def _complete(operation: dict[str, Any], doc: Doc) -> None:
    operation["summary"] = doc.summary
    if doc.description:
        operation["description"] = doc.description
    if "requestBody" in operation and _body_optional(doc) and not doc.body_required:
        operation["requestBody"]["required"] = False
    if doc.query is not None:
        _mark_required_parameters(operation, doc.query)
    responses: dict[int, Any] = operation["responses"]
    status, model = doc.ok
    if model is None:
        responses[status] = {"description": "Done; no content"}
    if doc.html_too:
        responses.setdefault(302, {"description": REDIRECT_TEXT})
    for code, response in responses.items():
        if not response.get("description"):
            response["description"] = ERROR_TEXT.get(code, "OK")


def _mark_required_parameters(operation: dict[str, Any], query: type[BaseModel]) -> None:
    # quart-schema leaves `required` out of query parameters, so a required one read as optional.
    required = {name for name, info in query.model_fields.items() if info.is_required()}
    for parameter in operation.get("parameters", ()):
        if parameter["in"] == "query" and parameter["name"] in required:
            parameter["required"] = True


def _body_optional(doc: Doc) -> bool:
    """Whether the request may come without a body (every field of its model is optional)."""
    fields = doc.request.model_fields.values() if doc.request else ()
    return not any(f.is_required() for f in fields)


def init_app(app: Quart) -> None:
    """Attach the documentation to the views and serve /openapi.json and /docs."""
    QuartSchema(
        app,
        info=Info(title="quart_auth_app", version=_version(), description=__doc__.split("\n")[0]),
        security_schemes={
            # A JWT from /login, or a personal access token (POST /me/tokens) held to its scopes.
            "bearer": HttpSecurityScheme(
                scheme="bearer", bearer_format="JWT, or a personal access token (qaa_pat_...)"
            ),
            "cookie": APIKeySecurityScheme(name="jwt_token", in_="cookie"),
        },
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        openapi_provider_class=Provider,
    )
    docs_ui.init_app(app)
    for endpoint, func in app.view_functions.items():
        if endpoint in DOCS:
            _document(func, DOCS[endpoint])
        elif endpoint in HTML_ONLY:
            hide(getattr(func, "__func__", func))  # a bound method for `static`


def _document(func: Callable[..., Any], doc: Doc) -> None:
    decorators: list[Callable[[Any], Any]] = [tag([doc.tag])]
    status, model = doc.ok
    if model is not None:
        decorators.append(document_response(model, status))
    if doc.request is not None:
        decorators.append(document_request(doc.request))
    if doc.query is not None:
        decorators.append(document_querystring(doc.query))
    decorators += [document_response(ErrorOut, code) for code in doc.errors]
    decorators += [document_response(out, code) for code, out in doc.extra.items()]
    if doc.auth:
        decorators.append(security_scheme(BEARER + ([{}] if doc.anonymous_too else [])))
    for decorate in decorators:
        decorate(func)


def _version() -> str:
    try:
        return version("quart_auth_app")
    except PackageNotFoundError:
        return "0.0.0"
