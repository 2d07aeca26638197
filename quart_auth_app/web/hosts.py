"""An ASGI middleware: a request whose Host header is no host name gets 400 before Quart sees it.

Werkzeug IDNA-encodes the host when Quart binds the URL map, before any view or error handler
runs, so a DNS label over 63 characters or an empty one ("a..b") raised out of the app: an
empty 500 and a traceback in the log on every such request, on every route (a cheap way to
flood the log). Hosts werkzeug quietly treats as absent (a bad port, non-ASCII bytes) would
otherwise build mail links and origin checks on an empty host. Refused here, nothing is logged
beyond the server's access line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from ..allowed_hosts import is_ip
from .finish import ASGIApp
from .security import BASE_HEADERS

# The characters werkzeug accepts in a host (plus "_", which it treats as no host but which
# container names carry), an IPv6 literal, and a port as werkzeug reads one.
HOST = re.compile(r"(?P<name>[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[1-9][0-9]{0,4}))?")
MAX_NAME = 253  # RFC 1035 §2.3.4, without the trailing dot of a fully qualified name
MAX_LABEL = 63
MAX_PORT = 65535
MAX_HOST_BYTES = MAX_NAME + 1 + len(":65535")
BODY = json.dumps({"message": "Bad request"}).encode()
HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
    (b"cache-control", b"no-store"),
    *((name.lower().encode(), value.encode()) for name, value in BASE_HEADERS),
]


def valid_host(value: str) -> bool:
    """Whether a Host header value is a host name or address with an optional port."""
    match = HOST.fullmatch(value)
    if match is None:
        return False
    name, port = match.group("name", "port")
    if port is not None and int(port) > MAX_PORT:
        return False
    if name.startswith("["):
        return is_ip(name[1:-1], version=6)
    labels = name.removesuffix(".").split(".")
    return len(name) <= MAX_NAME + 1 and all(0 < len(label) <= MAX_LABEL for label in labels)


@lru_cache(maxsize=256)
def _valid_host_bytes(value: bytes) -> bool:
    # A server sees the same few hosts over and over: each is checked once.
    return valid_host(value.decode("latin-1"))


def hosts_valid(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """No Host header (HTTP/1.0), or exactly one that is valid (RFC 9112 §3.2)."""
    # ASGI servers give header names in lower case.
    hosts = [value for name, value in headers if name == b"host"]
    if not hosts:
        return True
    return len(hosts) == 1 and len(hosts[0]) <= MAX_HOST_BYTES and _valid_host_bytes(hosts[0])


class RefuseBadHosts:
    """Wraps an ASGI app: HTTP and WebSocket requests with an unusable Host never reach it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan" or hosts_valid(scope["headers"]):
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 400, "headers": HEADERS})
            await send({"type": "http.response.body", "body": BODY, "more_body": False})
        else:
            await receive()  # websocket.connect; closing before accepting answers 403
            await send({"type": "websocket.close", "code": 1008, "reason": "Bad request"})
