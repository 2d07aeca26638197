"""Helpers shared by views: read a body once, remember the form to re-render on errors."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel
from quart import jsonify, request
from quart.typing import ResponseReturnValue

from .http import read_input
from .schemas import Input, parse_input
from .state import FormPage, state

M = TypeVar("M", bound=Input)


async def form_input(model: type[M], template: str | None = None, **context: Any) -> M:
    """Read and validate the body; on failure a browser sees `template` again with the error."""
    current = state()
    if template is not None:
        current.form = FormPage(template, context)
    data = await read_input()
    current.form_values = {k: v for k, v in data.items() if isinstance(v, str)}
    return parse_input(model, data)


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
    return state().form_values.get("next") or request.args.get("next")
