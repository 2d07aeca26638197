"""`serve --server granian`'s access line, written by the app: granian's own line, cheaper."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from quart_auth_app.web.access_line import AccessLine

# serve's format when granian wrote the line itself, in granian's own atoms.
GRANIAN_FORMAT = '%(addr)s "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).1fms'


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lines() -> Any:
    handler = Lines()
    logger = logging.getLogger("test.access_line")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler.lines
    logger.removeHandler(handler)


def scope(kind: str = "http", **changes: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "http_version": "1.1",
        "client": ("127.0.0.1", 50123),
        "method": "GET",
        "path": "/verify",
        "query_string": b"token=secret-in-the-query",
        "headers": [(b"authorization", b"Bearer abc.def.ghi")],
        **changes,
    }


async def nothing() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(_message: Any) -> None:
    return None


def answering(*messages: dict[str, Any]) -> Any:
    async def app(_scope: Any, _receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)

    return app


def without_time(line: str) -> str:
    return line.rpartition(" ")[0]


async def test_an_http_line_is_the_one_granian_wrote(lines: Any) -> None:
    logger, written = lines
    app = answering(
        {"type": "http.response.start", "status": 400, "headers": []},
        {"type": "http.response.body", "body": b"{}", "more_body": False},
    )
    await AccessLine(app, logger)(scope(), nothing, discard)
    granian = GRANIAN_FORMAT % {
        "addr": "127.0.0.1",
        "method": "GET",
        "path": "/verify",
        "protocol": "HTTP/1.1",
        "status": 400,
        "dt_ms": 0.0,
    }
    assert len(written) == 1
    assert without_time(written[0]) == without_time(granian)
    assert written[0].endswith("ms") and float(written[0].split()[-1][:-2]) >= 0
    assert "secret" not in written[0] and "Bearer" not in written[0]


async def test_a_request_that_sent_nothing_is_logged_as_the_servers_500(lines: Any) -> None:
    logger, written = lines

    async def broken(_scope: Any, _receive: Any, _send: Any) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        await AccessLine(broken, logger)(scope(method="POST", path="/login"), nothing, discard)
    assert [without_time(line) for line in written] == ['127.0.0.1 "POST /login HTTP/1.1" 500']


@pytest.mark.parametrize(
    ("messages", "status"),
    [
        ([{"type": "websocket.accept"}, {"type": "websocket.send", "text": "x"}], 101),
        ([{"type": "websocket.close", "code": 1008}], 403),
        ([{"type": "websocket.http.response.start", "status": 401, "headers": []}], 401),
    ],
)
async def test_a_socket_is_logged_once_when_its_handshake_is_answered(
    lines: Any, messages: list[dict[str, Any]], status: int
) -> None:
    logger, written = lines
    await AccessLine(answering(*messages), logger)(
        scope("websocket", path="/ws/dashboard"), nothing, discard
    )
    assert [without_time(line) for line in written] == [
        f'127.0.0.1 "GET /ws/dashboard HTTP/1.1" {status}'
    ]


async def test_lifespan_passes_without_a_line(lines: Any) -> None:
    logger, written = lines
    seen: list[str] = []

    async def app(given: Any, _receive: Any, _send: Any) -> None:
        seen.append(given["type"])

    await AccessLine(app, logger)({"type": "lifespan"}, nothing, discard)
    assert seen == ["lifespan"] and written == []
