"""Hypercorn's access-log line (SPEC §8) built from the five atoms `serve` logs, nothing else.

Hypercorn's `AccessLogAtoms` fills a dict with every request and response header and a copy of
`os.environ` for each line, whatever the format asks for; for a protected GET that was most of
what the access log cost. `QuickAccessLogger` computes the atoms of HYPERCORN_ACCESS_FORMAT
alone, with hypercorn's own spelling of each, through hypercorn's documented hook (`atoms`),
and leaves any other format to hypercorn. Only `serve --server hypercorn` imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from hypercorn.logging import Logger

if TYPE_CHECKING:
    from hypercorn.config import Config
    from hypercorn.typing import ResponseSummary, WWWScope

# The atoms QuickAccessLogger knows: %(h)s client, %(r)s request line without the query string,
# %(s)s status, %(b)s response Content-Length, %(D)s microseconds.
QUICK_ATOMS = frozenset({"h", "r", "s", "b", "D"})
_ATOM = re.compile(r"%\(([^)]*)\)")


class QuickAccessLogger(Logger):
    """Hypercorn's logger (same handlers, same `hypercorn.access` logger), cheaper atoms."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        wanted = set(_ATOM.findall(self.access_log_format or ""))
        self.quick = wanted <= QUICK_ATOMS

    def atoms(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> Mapping[str, str]:
        if not self.quick:
            return super().atoms(request, response, request_time)
        return quick_atoms(request, response, request_time)


def quick_atoms(
    request: WWWScope, response: ResponseSummary | None, request_time: float
) -> dict[str, str]:
    """The QUICK_ATOMS of one request, as hypercorn's AccessLogAtoms spells them."""
    client = request.get("client")
    if client is None:
        remote = "None"  # what hypercorn's format renders for a missing client
    elif len(client) == 2:
        remote = f"{client[0]}:{client[1]}"
    else:
        remote = str(client[0]) if len(client) == 1 else f"<???{client}???>"
    method = request["method"] if request["type"] == "http" else "GET"
    protocol = request.get("http_version", "ws")
    status, length = "-", "-"
    if response is not None:
        status = str(response["status"])
        for name, value in response.get("headers", ()):
            if name.lower() == b"content-length":
                length = value.decode("latin1")
    return {
        "h": remote,
        "r": f"{method} {request['path']} {protocol}",
        "s": status,
        "b": length,
        "D": str(int(request_time * 1_000_000)),
    }
