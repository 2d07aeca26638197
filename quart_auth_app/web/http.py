"""What the client wants back (HTML or JSON) and what it sent (JSON or a form), read safely."""

from __future__ import annotations

import json
from typing import Any

from quart import has_request_context, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import RequestEntityTooLarge

from ..allowed_hosts import is_ip
from ..errors import InvalidInput

JSON_TYPES = ("application/json",)
# When a client may try again after a store failed (SPEC §9): one value for every 503.
UNAVAILABLE_HEADERS = {"Retry-After": "5"}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# The routes a tutorial client posts its forms to (SPEC §3, second kind of caller).
TUTORIAL_FORM_PATHS = frozenset({"/signup", "/login", "/logout"})


def wants_html() -> bool:
    """Whether the client prefers text/html over application/json (a browser).

    A websocket handshake refused before accept is answered in JSON: no page is shown there.
    """
    if not has_request_context():
        return False
    # Without a text/ range or a quality (`application/json;q=0`), application/json matches
    # whatever text/html does, and wins the tie as the first listed: API clients (*/*,
    # application/json, no header) are answered without parsing the header.
    accept = request.headers.get("Accept", "")
    if ";" not in accept and "text/" not in accept.lower():
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def tutorial_form_caller() -> bool:
    """Whether to answer as the tutorial does: a form post to its routes, JSON not asked for.

    curl -d, Postman's form-data and the tutorial's own steps send `*/*` or no Accept at all;
    they get the tutorial's redirects and cookies (SPEC §3 rule 2). Browsers come first.
    """
    return (
        request.method == "POST"
        and request.path in TUTORIAL_FORM_PATHS
        and request.mimetype in FORM_TYPES
        and not wants_html()
        and not _names_json()
    )


def wants_redirect() -> bool:
    """Whether a success is the redirect (browsers, tutorial form callers) rather than JSON."""
    return wants_html() or tutorial_form_caller()


def _names_json() -> bool:
    # `*/*` accepts JSON but does not ask for it; only a named type (application/json,
    # application/*) ranked at least as high as text/html does.
    named = MIMEAccept([item for item in request.accept_mimetypes if item[0] != "*/*"])
    return named.best_match(["application/json", "text/html"]) == "application/json"


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def _finite_float(value: str) -> float:
    number = float(value)
    if number in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return number


def parse_json(raw: bytes) -> dict[str, Any]:
    """Decode a JSON object body, refusing what Python's json accepts but JSON does not."""
    try:
        data = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidInput("JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"Malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("The JSON body must be an object")
    return data


async def read_input(lists: tuple[str, ...] = ()) -> dict[str, Any]:
    """The request body as a dict, from JSON or a form; an empty body is an empty dict.

    A form field named in `lists` becomes the list of its values; any other, its first value.
    """
    mimetype = request.mimetype
    try:
        if mimetype in JSON_TYPES or mimetype.endswith("+json"):
            body = await request.get_data(cache=True, as_text=False, parse_form_data=False)
            return parse_json(bytes(body)) if body.strip() else {}
        if mimetype in FORM_TYPES:
            form = await request.form
            return {key: form.getlist(key) if key in lists else form.get(key) for key in form}
        raw = await request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise
    except ValueError as exc:
        raise InvalidInput(f"Malformed request body: {exc}") from None
    if raw:
        raise InvalidInput("Unsupported content type: send application/json or a form")
    return {}


def client_address(trusted_proxies: int) -> str:
    """The socket peer, or the address the n-th trusted proxy saw when proxies are configured."""
    peer = request.remote_addr or "unknown"
    if trusted_proxies <= 0:
        return peer
    hops = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
    hops = [hop for hop in hops if hop]
    if len(hops) < trusted_proxies:
        return peer
    # A misconfigured proxy chain must not turn any header text into a stored "address".
    return hops[-trusted_proxies] if is_ip(hops[-trusted_proxies]) else peer
