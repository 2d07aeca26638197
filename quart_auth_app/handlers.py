"""The one mapping of errors to HTTP: JSON for API clients, the form again for browsers."""

from __future__ import annotations

import logging
from typing import Any, cast
from urllib.parse import quote

from quart import Quart, Response, g, jsonify, redirect, render_template, request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from .errors import AppError, ServiceUnavailable, Throttled
from .negotiation import wants_html
from .views.feedback import field_sentences, form_summary

log = logging.getLogger(__name__)


def error_json(status: int, message: str, errors: dict[str, str] | None = None) -> Response:
    """The one JSON error shape: {"message": ..., "errors": {...}?}."""
    body: dict[str, Any] = {"message": message}
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    return response


async def _browser_error(status: int, message: str, errors: dict[str, str] | None) -> Response:
    if status == 401 and g.get("protected_page"):
        return cast(Response, redirect(login_redirect_target()))
    template = g.get("form_template")
    if template:
        if errors:  # people read which fields to correct, then each field's reason beside it
            message, errors = form_summary(errors), field_sentences(errors)
        values = {k: v for k, v in g.get("form_values", {}).items() if "password" not in k}
        context = {**g.get("form_context", {}), "error": message, "errors": errors or {}}
        body = await render_template(template, values=values, **context)
    else:
        # The header shows who is signed in when the error came after authentication.
        auth = g.get("auth")
        user = auth[0] if auth else None
        body = await render_template("error.html", status=status, message=message, user=user)
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def login_redirect_target() -> str:
    """/login, remembering where the browser was going unless that is the default anyway."""
    target = request.full_path.rstrip("?")
    if request.method != "GET" or target == "/dashboard":
        return "/login"
    return f"/login?next={quote(target, safe='')}"


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
        response = await render_error(error.status, message, error.errors)
        if response.status_code == error.status:
            response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        response = await render_error(status, _http_message(error))
        allowed = getattr(error, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    @app.errorhandler(OSError)
    async def store_unreachable(error: Exception) -> Response:
        # The database (which also holds revocations) is down: fail closed with 503, not 500.
        log.error("storage unreachable: %s", type(error).__name__)
        response = await render_error(503, ServiceUnavailable.message)
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return await render_error(500, "Internal server error")


def _http_message(error: HTTPException) -> str:
    messages = {
        400: "Bad request",
        404: "Not found",
        405: "Method not allowed",
        413: "Request body too large (limit 64 KiB)",
        415: "Unsupported content type",
    }
    return messages.get(error.code or 500, error.name)
