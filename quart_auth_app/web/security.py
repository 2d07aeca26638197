"""Security headers, and refusal of unknown hosts and of cross-origin unsafe requests (SPEC §7).

ALLOWED_HOSTS and where mail links point: docs/mail.md.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from quart import Quart, Response, request, websocket

from ..allowed_hosts import HostPattern, host_allowed
from ..errors import Forbidden
from .errors import render_error

log = logging.getLogger(__name__)

UNKNOWN_HOST = "Unknown host"
# Load balancers and Kubernetes probe by address (a pod's IP changes with every pod), and the
# health answer builds nothing from the host, so it answers whatever the Host header says.
HOST_EXEMPT_PATHS = frozenset({"/healthz"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# On every response, those answered before Quart (web/hosts.py) included.
BASE_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
# Token, account and signed-in pages: never kept by browsers or shared caches.
NO_STORE_PREFIXES = (
    "/login",
    "/signup",
    "/token",
    "/logout",
    "/me",
    "/password",
    "/verify",
    "/account",
    "/dashboard",
    "/reauth",
    "/admin",
)


def cross_origin_refused() -> bool:
    """Whether an unsafe request comes from a browser on another site or origin."""
    if request.method not in UNSAFE_METHODS:
        return False
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site.lower() not in ("same-origin", "none")
    return foreign_origin(request.headers.get("Origin"), request.host)


def foreign_origin(origin: str | None, host: str) -> bool:
    """Whether an Origin header names a site other than `host` (no header: not a browser)."""
    if origin is None:
        return False
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # "http://[x": not an origin anyone can be on
        return True
    return origin == "null" or netloc.lower() != host.lower()


def add_security_headers(response: Response) -> Response:
    """The headers every response carries, plus CSP on pages and no-store on token responses.

    A header the view set itself is kept.
    """
    headers = response.headers
    present = {name.lower() for name in headers.keys()}  # noqa: SIM118 - Headers, not a dict
    for name, value in BASE_HEADERS:
        if name.lower() not in present:
            headers.add(name, value)
    if "content-security-policy" not in present and response.mimetype == "text/html":
        headers.add("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    if request.path.startswith(NO_STORE_PREFIXES):
        headers["Cache-Control"] = "no-store"
        if "pragma" not in present:
            headers.add("Pragma", "no-cache")
    return response


def refuse_unknown_hosts(app: Quart, allowed: tuple[HostPattern, ...]) -> None:
    """With ALLOWED_HOSTS set, answer 400 to a request for another host before any other work."""
    if not allowed:
        return

    @app.before_request
    async def refuse_unknown_host() -> Response | None:
        # request.host is what mail links and the Origin check use: the Host header only
        # (X-Forwarded-Host is never read), with the scheme's default port left out.
        if request.path in HOST_EXEMPT_PATHS or host_allowed(request.host, allowed):
            return None
        return await _unknown_host(request.headers.get("Host", ""))

    @app.before_websocket
    async def refuse_unknown_socket_host() -> Response | None:
        if host_allowed(websocket.host, allowed):
            return None
        return await _unknown_host(websocket.headers.get("Host", ""))


async def _unknown_host(sent: str) -> Response:
    log.info("refused a request for host %r: not in ALLOWED_HOSTS", sent[:100])
    return await render_error(400, UNKNOWN_HOST)


def init_app(app: Quart) -> None:
    """Install the cross-origin gate and the response headers."""

    @app.before_request
    async def refuse_cross_origin() -> None:
        if cross_origin_refused():
            raise Forbidden("Cross-origin request refused")

    @app.before_websocket
    async def refuse_cross_site_socket() -> None:
        # Cross-site websocket hijacking: a page elsewhere opening a socket with our cookies.
        # Browsers always send Origin on a websocket handshake; other clients need not.
        if foreign_origin(websocket.headers.get("Origin"), websocket.host):
            raise Forbidden("Cross-origin websocket refused")

    @app.after_request
    async def security_headers(response: Response) -> Response:
        # Async on purpose: Quart runs a sync hook in a thread pool, a hop on every response.
        return add_security_headers(response)
