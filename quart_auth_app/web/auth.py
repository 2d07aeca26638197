"""Where tokens travel (header or cookies), `token_required`, and the user resolved once per request."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from functools import wraps
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast, overload

from quart import Quart, after_this_request, has_websocket_context, request, websocket
from werkzeug.sansio.response import Response

from ..access_tokens import is_pat
from ..errors import MfaEnrollmentRequired, ReauthRequired, RefreshRaced, TokenInvalid, TokenMissing
from ..lookups import PatGrant
from ..models import User
from ..permissions import Needs
from ..sessions import TokenPair
from ..tokens import Claims
from .http import client_address
from .sockets import guard_socket
from .state import Caller, request_db, services, state

ACCESS_COOKIE = "jwt_token"
REFRESH_COOKIE = "refresh_token"

P = ParamSpec("P")
R = TypeVar("R")


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer` header; "" when the header is there but unusable."""
    header = (websocket if has_websocket_context() else request).headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def authenticate_request() -> Caller:
    """Resolve the caller once per request: the header wins; a cookie may renew silently."""
    current = state()
    if current.caller is None:
        current.caller = await _resolve()
    return current.caller


async def _resolve() -> Caller:
    header = bearer_token()
    if header is not None:
        if not header:
            raise TokenInvalid()
        if is_pat(header):  # told by its prefix: never decoded as a JWT
            return pat_caller(await services().sessions.user_for_pat(header))
        return Caller(*await _user_for(header))
    return Caller(*await _from_cookies())


def pat_caller(grant: PatGrant) -> Caller:
    """The caller a personal access token proves: held to its scopes, naming no session."""
    claims = Claims(
        public_id=grant.user.public_id,
        session_id="",
        jti=grant.token_id,
        type="access",
        issued_at=0,  # no sign-in stands behind it: never a recent authentication
        expires_at=0 if grant.expires_at is None else int(grant.expires_at.timestamp()),
    )
    return Caller(grant.user, claims, grant.scopes)


async def _from_cookies() -> tuple[User, Claims]:
    # A personal access token is sent in the header only: one in a cookie is refused as any
    # token that is not a JWT (sessions.SessionService._verify, before decoding).
    cookie = request.cookies.get(ACCESS_COOKIE)
    refresh = request.cookies.get(REFRESH_COOKIE)
    if not cookie and not refresh:
        raise TokenMissing()
    if cookie:
        try:
            return await _user_for(cookie)
        except TokenInvalid:
            if not refresh:
                raise
    assert refresh is not None
    return await _renew(refresh)


async def _user_for(token: str) -> tuple[User, Claims]:
    # The check has its own connection (the session store's): no ORM session is opened for it.
    return await services().sessions.user_for_access(token)


async def _renew(refresh: str) -> tuple[User, Claims]:
    """An expired access cookie with a live refresh cookie: rotate and hand out fresh cookies."""
    try:
        rotated = await services().sessions.rotate(request_db(), refresh)
    except RefreshRaced:
        raise  # another tab rotated it a moment ago: its fresh cookies must survive
    except TokenInvalid:
        clear_cookies_after_request()
        raise
    after_this_request(_setting_cookies(rotated.tokens))
    claims = services().tokens.verify(rotated.tokens.access_token, "access")
    return rotated.user, claims


def _setting_cookies(pair: TokenPair) -> Callable[[Any], Awaitable[Any]]:
    async def apply(response: Any) -> Any:
        # A view that set or cleared the cookies itself (login, logout) has the last word.
        if not _sets_auth_cookie(response):
            set_auth_cookies(response, pair)
        return response

    return apply


def clear_cookies_after_request() -> None:
    """Have this request's response (error responses too) clear both cookies."""
    after_this_request(_clearing_cookies)


def _sets_auth_cookie(response: Response) -> bool:
    return any(
        value.startswith((f"{ACCESS_COOKIE}=", f"{REFRESH_COOKIE}="))
        for value in response.headers.getlist("Set-Cookie")
    )


async def _clearing_cookies(response: Any) -> Any:
    clear_auth_cookies(response)
    return response


def _cookie_secure() -> bool:
    mode = services().settings.cookie_secure
    return mode == "true" or (mode == "auto" and request.scheme in ("https", "wss"))


def set_auth_cookies(response: Response, pair: TokenPair) -> None:
    """Put both tokens in HttpOnly, SameSite=Lax cookies."""
    secure = _cookie_secure()
    for name, value, max_age in (
        (ACCESS_COOKIE, pair.access_token, pair.expires_in),
        (REFRESH_COOKIE, pair.refresh_token, pair.refresh_expires_in),
    ):
        response.set_cookie(
            name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="Lax"
        )


def clear_auth_cookies(response: Response) -> None:
    """Remove both cookies, with the attributes they were set with."""
    secure = _cookie_secure()
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="Lax")


class Gate(Protocol):
    """What `token_required(roles=..., scopes=...)` returns: a decorator for one view."""

    def __call__(
        self, view: Callable[Concatenate[User, P], Awaitable[R]], /
    ) -> Callable[P, Awaitable[R]]: ...


@overload
def token_required(
    view: Callable[Concatenate[User, P], Awaitable[R]], /
) -> Callable[P, Awaitable[R]]: ...


@overload
def token_required(
    *,
    roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
    fresh: bool = False,
    session_only: bool = False,
) -> Gate: ...


def token_required(
    view: Callable[Concatenate[User, P], Awaitable[R]] | None = None,
    /,
    *,
    roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
    fresh: bool = False,
    session_only: bool = False,
) -> Callable[P, Awaitable[R]] | Gate:
    """Let the view run only for a valid access token; pass it the user first, as the tutorial.

    With `roles`, the user must hold every one (read on this request: a revoked role holds at
    once); with `scopes`, a personal access token must carry every one; with `session_only`,
    no personal access token may call it at all (a login session is needed). Each is a 403.
    With `fresh`, the sign-in behind the token must be within JWT_FRESH_SECONDS (RFC 9470
    step-up): an older one is a 401 "Recent authentication required", and POST /reauth makes
    it fresh again. A personal access token is not held to `fresh`: it was made by a fresh
    sign-in (POST /me/tokens is fresh-only) and is limited by its scopes.
    """
    gate = _gate(Needs.of(roles, scopes, session_only), fresh)
    return gate if view is None else gate(view)


def _gate(needs: Needs, fresh: bool) -> Gate:
    def gate(view: Callable[Concatenate[User, P], Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(view)
        async def gated(*args: P.args, **kwargs: P.kwargs) -> R:
            if has_websocket_context():
                token = handshake_token()
                return cast(R, await guard_socket(view, token, needs, *args, **kwargs))
            state().protected = True
            caller = await authenticate_request()
            needs.check(caller.user.roles, caller.scopes)
            # A personal access token has no sign-in to be fresh: it was made by a fresh one and
            # is held to its scopes (as GitHub's sudo mode spares its tokens).
            if fresh and caller.scopes is None:
                require_fresh(caller.claims)
            await require_enrollment(caller.user)
            return await view(caller.user, *args, **kwargs)

        gated.needs = needs  # type: ignore[attr-defined]  # read by declared_scopes()
        return gated

    return gate


def handshake_token() -> str | None:
    """A websocket handshake's token: the header wins, then the access cookie; never the URL.

    A browser's access cookie may have expired while its refresh cookie lives: a handshake
    cannot set cookies, so the page (which renews them on load) opens its socket afterwards.
    """
    header = bearer_token()
    if header is not None:
        return header
    return websocket.cookies.get(ACCESS_COOKIE) or None


# What a user who must enroll (MFA_REQUIRED_ROLES) may still do: set up TOTP, or leave.
ENROLLMENT_ENDPOINTS = frozenset(
    {
        "mfa.enroll",
        "mfa.confirm",
        "mfa_page.setup",
        "mfa_page.confirm",
        "mfa_page.download_codes",
        "browser.account",
        "tokens.logout",
        "tokens.logout_all",
    }
)


async def require_enrollment(user: User) -> None:
    """MfaEnrollmentRequired for a user whose role needs TOTP and who has none yet.

    Asked only of users holding such a role, so nobody else pays for the look-up.
    """
    app_services = services()
    required = app_services.settings.mfa_required_roles
    if not required or user.roles.isdisjoint(required) or request.endpoint in ENROLLMENT_ENDPOINTS:
        return
    if not await app_services.accounts.mfa.enabled(request_db(), user.id):
        raise MfaEnrollmentRequired()


def require_fresh(claims: Claims) -> None:
    """ReauthRequired unless the token's sign-in is recent enough."""
    max_age = services().settings.jwt_fresh_seconds
    if time.time() - claims.auth_time > max_age:
        raise ReauthRequired(max_age)


def declared_scopes(app: Quart) -> frozenset[str]:
    """Every scope some route of the app asks for (the scopes a token may usefully carry)."""
    found: set[str] = set()
    for view in app.view_functions.values():
        needs = getattr(view, "needs", None)
        if isinstance(needs, Needs):
            found |= needs.scopes
    return frozenset(found)


def current_caller() -> Caller:
    """The authenticated caller of the current request (inside a `token_required` view)."""
    caller = state().caller
    if caller is None:
        raise RuntimeError("current_caller() outside a token_required view")
    return caller


def current_user() -> User:
    """The authenticated user of the current request (inside a `token_required` view)."""
    return current_caller().user


def current_claims() -> Claims:
    """The verified claims of the current request (inside a `token_required` view)."""
    return current_caller().claims


def caller_address() -> str:
    """The client address used for throttling and session records."""
    return client_address(services().settings.trusted_proxies)


def request_meta() -> dict[str, Any]:
    """Facts about the client recorded with a new session."""
    return {"user_agent": request.headers.get("User-Agent"), "client_address": caller_address()}
