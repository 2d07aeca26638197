"""Helpers shared by views: read a body once, remember the form to re-render on errors."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel
from quart import g, jsonify, request
from quart.typing import ResponseReturnValue

from ..negotiation import client_address, read_input
from ..schemas import Input, parse_input
from ..services import services

M = TypeVar("M", bound=Input)


async def form_input(model: type[M], template: str | None = None, **context: Any) -> M:
    """Read and validate the body; on failure a browser sees `template` again with the error."""
    if template is not None:
        g.form_template = template
        g.form_context = context
    data = await read_input()
    g.form_values = {k: v for k, v in data.items() if isinstance(v, str)}
    return parse_input(model, data)


def caller_address() -> str:
    """The client address used for throttling and session records."""
    return client_address(services().settings.trusted_proxies)


def safe_next(target: str | None, default: str = "/dashboard") -> str:
    """A local path to go to after login; anything else (another host, a scheme) is ignored."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ch in target for ch in "\r\n\t\\"):
        return default
    return target


def model_json(model: BaseModel, status: int = 200) -> ResponseReturnValue:
    """A pydantic model as a JSON response."""
    response = jsonify(model.model_dump(mode="json"))
    response.status_code = status
    return response


def no_content() -> ResponseReturnValue:
    """204 with an empty body."""
    return "", 204


def next_param() -> str | None:
    """The `next` target from the query string or the submitted form."""
    form_values: dict[str, str] = g.get("form_values", {})
    return form_values.get("next") or request.args.get("next")
