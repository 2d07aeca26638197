"""`serve --server hypercorn`'s access-log line: the quick atoms give hypercorn's own line."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypercorn.config import Config
from hypercorn.logging import AccessLogAtoms

from quart_auth_app.access_log import QuickAccessLogger, quick_atoms
from quart_auth_app.serve import HYPERCORN_ACCESS_FORMAT


def http_scope(**changes: Any) -> dict[str, Any]:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "client": ("127.0.0.1", 50123),
        "method": "GET",
        "path": "/verify",
        "query_string": b"token=secret-in-the-query",
        "scheme": "http",
        "headers": [(b"host", b"example.test"), (b"authorization", b"Bearer abc.def.ghi")],
    }
    return {**scope, **changes}


RESPONSE = {"status": 200, "headers": [(b"content-type", b"text/html"), (b"Content-Length", b"52")]}
CASES = {
    "GET with a length": (http_scope(), RESPONSE, 0.0012345),
    "no Content-Length": (http_scope(method="POST"), {"status": 302, "headers": []}, 0.5),
    "no response": (http_scope(), None, 2.0),
    "unix socket client": (http_scope(client=("/run/app.sock",)), RESPONSE, 0.0),
    "no client": (http_scope(client=None), RESPONSE, 0.0),
    "HTTP/2": (http_scope(http_version="2"), {"status": 404, "headers": []}, 0.01),
    "websocket": (
        {
            "type": "websocket",
            "path": "/ws",
            "query_string": b"",
            "scheme": "ws",
            "headers": [],
            "client": ("::1", 4000),
        },
        {"status": 101, "headers": []},
        0.1,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_quick_atoms_give_hypercorns_line(case: str) -> None:
    request, response, seconds = CASES[case]
    theirs = HYPERCORN_ACCESS_FORMAT % AccessLogAtoms(request, response, seconds)  # type: ignore[arg-type]
    ours = HYPERCORN_ACCESS_FORMAT % quick_atoms(request, response, seconds)  # type: ignore[arg-type]
    assert ours == theirs
    assert "secret-in-the-query" not in ours  # a link's token stays out of the log


def test_another_format_gets_hypercorns_atoms() -> None:
    config = Config()
    config.accesslog = logging.getLogger("test.access")
    config.access_log_format = '%(h)s "%(r)s" %(s)s %({user-agent}i)s'
    logger = QuickAccessLogger(config)
    request = http_scope(headers=[(b"user-agent", b"curl/8")])
    line = config.access_log_format % logger.atoms(request, RESPONSE, 0.0)  # type: ignore[arg-type]
    assert line.endswith(" curl/8")


def test_servers_format_takes_the_quick_path() -> None:
    config = Config()
    config.access_log_format = HYPERCORN_ACCESS_FORMAT
    assert QuickAccessLogger(config).quick
