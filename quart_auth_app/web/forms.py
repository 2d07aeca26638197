"""Helpers shared by views: read a body once, remember the form to re-render on errors."""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Any, TypeVar
from urllib.parse import unquote

from pydantic import BaseModel
from quart import jsonify, request
from quart.typing import ResponseReturnValue

from .http import read_input
from .schemas import Input, parse_input
from .state import FormPage, state

M = TypeVar("M", bound=Input)


async def form_input(
    model: type[M], template: str | None = None, *, lists: tuple[str, ...] = (), **context: Any
) -> M:
    """Read and validate the body; on failure a browser sees `template` again with the error.

    A form field named in `lists` is read as every value sent for it (checkboxes).
    """
    current = state()
    if template is not None:
        current.form = FormPage(template, context)
    data = await read_input(lists)
    current.form_values = {k: v for k, v in data.items() if isinstance(v, str)}
    return parse_input(model, data)


# What a `next` target may be made of: a path, query and fragment as RFC 3986 writes them,
# printable ASCII only. Anything else (control characters, spaces, quotes, backslashes,
# non-ASCII) is not a link this app writes, and some of it cannot go into a Location header.
PATH_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?#%")
PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
MAX_NEXT = 2048


def local_path(target: str | None) -> str | None:
    """`target` if it is a plain path on this site, else None (another host, a scheme, junk).

    A single leading "/" leaves no room for a scheme or an authority (RFC 3986 §4.2).
    """
    if not target or len(target) > MAX_NEXT or not set(target) <= PATH_CHARACTERS:
        return None
    if PERCENT_ESCAPE.search(target):
        return None  # a "%" that escapes nothing is not a URL
    # Decoded too: "/%2F/evil", "/%5Cevil" or "%0C" mean the same to whatever decodes it later.
    decoded = unquote(target)
    if not target.startswith("/") or target.startswith("//") or decoded.startswith("//"):
        return None
    if "\\" in decoded or any(unicodedata.category(ch) == "Cc" for ch in decoded):
        return None
    return target


def safe_next(target: str | None, default: str = "/dashboard") -> str:
    """A local path to go to after login; anything else is ignored for `default`."""
    return local_path(target) or default


def model_json(model: BaseModel, status: int = 200) -> ResponseReturnValue:
    """A pydantic model as a JSON response."""
    response = jsonify(model.model_dump(mode="json"))
    response.status_code = status
    return response


def no_content() -> ResponseReturnValue:
    """204 with an empty body."""
    return "", 204


def next_param() -> str | None:
    """The `next` target from the submitted form or the query string, if it is a local path."""
    return local_path(state().form_values.get("next") or request.args.get("next"))
