"""The one mapping of errors to HTTP: JSON for API clients, the form again for browsers."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any, cast
from urllib.parse import quote

from quart import Quart, Response, jsonify, redirect, render_template, request
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from ..errors import (
    AppError,
    Conflict,
    EmailTaken,
    Forbidden,
    InsufficientPermissions,
    InvalidCredentials,
    InvalidInput,
    InvalidMailToken,
    InvalidMfaCode,
    MfaEnrollmentRequired,
    NotFound,
    ReauthRequired,
    ServiceUnavailable,
    Throttled,
    TokenMissing,
)
from ..faults import describe, is_store_failure
from ..migrate import UPGRADE_HINT, missing_schema
from .forms import local_path, next_param
from .http import UNAVAILABLE_HEADERS, wants_html
from .state import state
from .views.feedback import field_sentences, form_summary

log = logging.getLogger(__name__)

# The HTTP status of each domain error (the nearest listed class decides).
STATUS: dict[type[AppError], int] = {
    InvalidInput: 400,
    EmailTaken: 400,
    InvalidMailToken: 400,
    InvalidCredentials: 401,
    InvalidMfaCode: 401,
    TokenMissing: 401,
    ReauthRequired: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Throttled: 429,
    ServiceUnavailable: 503,
}


def status_of(error: AppError) -> int:
    """The status code a client sees for a domain error."""
    return next((STATUS[kind] for kind in type(error).__mro__ if kind in STATUS), 400)


def headers_of(error: AppError) -> dict[str, str]:
    """The headers that go with a domain error (RFC 6750, Retry-After)."""
    if isinstance(error, TokenMissing):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(error, InsufficientPermissions):
        # A route only a login session may use names no scope a token could be given.
        needed = f', scope="{" ".join(error.needed)}"' if error.needed else ""
        return {"WWW-Authenticate": f'Bearer error="insufficient_scope"{needed}'}
    if isinstance(error, ReauthRequired):
        # RFC 9470 §3: the client may step up and retry.
        return {
            "WWW-Authenticate": 'Bearer error="insufficient_user_authentication", '
            f"max_age={error.max_age}"
        }
    if isinstance(error, Throttled):
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, ServiceUnavailable):
        return dict(UNAVAILABLE_HEADERS)
    return {}


def error_json(status: int, message: str, errors: dict[str, str] | None = None) -> Response:
    """The one JSON error shape: {"message": ..., "errors": {...}?}."""
    body: dict[str, Any] = {"message": message}
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    return response


async def _browser_error(status: int, message: str, errors: dict[str, str] | None) -> Response:
    current = state()
    if status == 401 and current.protected:
        return cast(Response, redirect(login_redirect_target()))
    if current.form is not None:
        if errors:  # people read which fields to correct, then each field's reason beside it
            message, errors = form_summary(errors), field_sentences(errors)
        context = {
            "next": next_param() or "",  # read after the body: the login form's hidden field
            **current.form.context,
            "error": message,
            "errors": errors or {},
        }
        body = await render_template(current.form.template, values=echoed_values(), **context)
    else:
        # The header shows who is signed in when the error came after authentication.
        user = current.caller.user if current.caller else None
        body = await render_template("error.html", status=status, message=message, user=user)
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def echoed_values() -> dict[str, str]:
    """The submitted fields a refused form shows again: never a password, never unencodable text.

    A JSON body can carry lone surrogates ("\\ud800"), which no page can be encoded with.
    """
    return {
        name: value
        for name, value in state().form_values.items()
        if "password" not in name and _encodable(value)
    }


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def login_redirect_target() -> str:
    """/login, remembering where the browser was going unless that is the default anyway."""
    target = local_path(request.full_path.rstrip("?"))
    if request.method != "GET" or target is None or target == "/dashboard":
        return "/login"
    return f"/login?next={quote(target, safe='')}"


def reauth_redirect_target() -> str:
    """/reauth, with the page to come back to: this one for a GET, else the account page."""
    target = local_path(request.full_path.rstrip("?")) if request.method == "GET" else None
    return f"/reauth?next={quote(target or '/account', safe='')}"


async def render_error(status: int, message: str, errors: dict[str, str] | None = None) -> Response:
    """Answer an error in the shape the client asked for."""
    if wants_html():
        return await _browser_error(status, message, errors)
    return error_json(status, message, errors)


def retry_hint(seconds: int) -> str:
    """When to try again, in words a person reads (API clients read `Retry-After`)."""
    if seconds < 60:
        return f"Please try again in {seconds} second{'s' if seconds != 1 else ''}."
    minutes = -(-seconds // 60)
    return f"Please try again in {minutes} minute{'s' if minutes != 1 else ''}."


def register_error_handlers(app: Quart) -> None:
    """Map every error to one response shape per audience."""

    @app.errorhandler(AppError)
    async def app_error(error: AppError) -> Response:
        message = error.message
        if isinstance(error, Throttled) and wants_html():
            message = f"Too many attempts. {retry_hint(error.retry_after)}"
        if isinstance(error, ReauthRequired) and wants_html():
            return cast(Response, redirect(reauth_redirect_target()))
        if isinstance(error, MfaEnrollmentRequired) and wants_html():
            return cast(Response, redirect("/account#two-factor"))
        if isinstance(error, ServiceUnavailable):
            # Which store failed is for the operator; every client reads SPEC §9's one sentence.
            log.error("%s: %s", error.message, describe(error.__cause__))
            message = ServiceUnavailable.message
        status = status_of(error)
        response = await render_error(status, message, error.errors)
        if response.status_code == status:
            response.headers.update(headers_of(error))
        return response

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        response = await render_error(status, _http_message(error))
        allowed = getattr(error, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return await render_error(500, "Internal server error")

    @app.errorhandler(DBAPIError)
    @app.errorhandler(sqlite3.Error)  # speed/'s own SQLite connections
    @app.errorhandler(PoolTimeout)
    @app.errorhandler(DisconnectionError)
    @app.errorhandler(OSError)  # refused, reset, and TimeoutError: connect and statement timeouts
    async def store_error(error: Exception) -> Response:
        if missing_schema(error):
            return await schema_behind(error)
        if not is_store_failure(error):
            return await unexpected(error)  # a mistake in the code, not the store: 500, logged
        # The store (which also holds revocations) failed: fail closed with 503, never a 500.
        log.error("store unavailable: %s", describe(error))
        return await unavailable()


async def unavailable() -> Response:
    """503 with Retry-After, in the shape the client asked for."""
    response = await render_error(503, ServiceUnavailable.message)
    response.headers.update(UNAVAILABLE_HEADERS)
    return response


async def schema_behind(error: Exception) -> Response:
    # The operator's mistake, not the client's: the log says what to run, the client may retry.
    log.error(
        "database schema lacks what this code needs (%s): %s",
        type(getattr(error, "orig", None) or error).__name__,
        UPGRADE_HINT,
    )
    return await unavailable()


def _http_message(error: HTTPException) -> str:
    messages = {
        400: "Bad request",
        404: "Not found",
        405: "Method not allowed",
        413: "Request body too large (limit 64 KiB)",
        415: "Unsupported content type",
    }
    return messages.get(error.code or 500, error.name)
