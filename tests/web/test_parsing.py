"""SPEC §7 robust parsing: hostile bodies get a clear 400 or 413, never a 500.

In-process tests cover the parsing rules; a real hypercorn server covers what only a socket
shows (chunked bodies without Content-Length).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from quart_auth_app.testing import SignedIn

from ..conftest import bearer
from ..servers import FAST_HASHING, Server, running_server

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LIMIT = 64 * 1024
# Every route that reads a body from an anonymous client.
ANONYMOUS_POSTS = ["/signup", "/login", "/token/refresh"]

HOSTILE_JSON: dict[str, bytes] = {
    "truncated": b'{"name": "Ann", ',
    "trailing garbage": b'{"name": "Ann"} x',
    "single quotes": b"{'name': 'Ann'}",
    "not utf-8": b'{"name": "\xff\xfe"}',
    "deeply nested arrays": b"[" * 60_000,
    "deeply nested objects": b'{"a":' * 12_000,
    "nested in a field": b'{"name": ' + b"[" * 50_000 + b"}",
    "array": b"[1, 2, 3]",
    "string": b'"hello"',
    "number": b"42",
    "null": b"null",
    "true": b"true",
    "huge exponent": b'{"name": 1e999999}',
    "negative huge exponent": b'{"name": -1e999999}',
    "huge integer": b'{"name": ' + b"9" * 10_000 + b"}",
    "NaN": b'{"name": NaN}',
    "Infinity": b'{"name": Infinity}',
    "-Infinity": b'{"password": -Infinity}',
    "lone surrogate": b'{"name": "\\ud800", "email": "x@example.com", "password": "\\udfff"}',
    "NUL escaped": b'{"name": "a\\u0000b", "email": "x\\u0000@example.com"}',
    "raw control character": b'{"name": "a\x01b"}',
    "duplicate keys": b'{"name": "a", "name": {"x": 1}}',
    "wrong types": b'{"name": ["Ann"], "email": {"a": 1}, "password": 12345678}',
    "BOM": b'\xef\xbb\xbf{"name": "Ann"}',
    "whitespace only": b"   \n\t  ",
}


def assert_clean_400(response: Any, body: dict[str, Any]) -> None:
    assert response.status_code == 400, body
    assert isinstance(body.get("message"), str) and body["message"]
    assert response.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("path", ANONYMOUS_POSTS)
@pytest.mark.parametrize("case", sorted(HOSTILE_JSON))
async def test_hostile_json_is_a_clean_400(client: Any, path: str, case: str) -> None:
    response = await client.post(path, data=HOSTILE_JSON[case], headers=JSON)
    body = await response.get_json()
    if path == "/token/refresh" and response.status_code == 401:
        return  # an empty or unusable body simply carries no refresh token
    assert_clean_400(response, body)


async def test_malformed_json_says_so(client: Any) -> None:
    response = await client.post("/signup", data=b'{"name": ', headers=JSON)
    assert response.status_code == 400
    assert "JSON" in (await response.get_json())["message"]


async def test_deep_nesting_says_so(client: Any) -> None:
    response = await client.post("/login", data=b"[" * 60_000, headers=JSON)
    assert response.status_code == 400
    assert "nested" in (await response.get_json())["message"]


async def test_non_object_json_says_so(client: Any) -> None:
    response = await client.post("/signup", data=b'["name", "email"]', headers=JSON)
    assert (await response.get_json())["message"] == "The JSON body must be an object"


@pytest.mark.parametrize("mimetype", ["application/json", "application/problem+json"])
async def test_json_with_parameters_and_suffix_types_is_read(client: Any, mimetype: str) -> None:
    body = json.dumps({"name": "Ann", "email": "ann@example.com", "password": "horse battery"})
    headers = {"Content-Type": f"{mimetype}; charset=utf-8"}
    response = await client.post("/signup", data=body.encode(), headers=headers)
    assert response.status_code == 201


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/octet-stream", "image/png", None],
)
async def test_wrong_content_type_is_400(client: Any, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/signup", data=b"name=Ann&password=x", headers=headers)
    body = await response.get_json()
    assert_clean_400(response, body)
    assert "content type" in body["message"].lower()


async def test_json_declared_but_form_sent_is_400(client: Any) -> None:
    response = await client.post("/login", data=b"email=a@example.com&password=x", headers=JSON)
    assert_clean_400(response, await response.get_json())


async def test_form_values_with_nul_are_refused(client: Any) -> None:
    body = b"name=a%00b&email=a@example.com&password=abcdefghijk"
    response = await client.post("/signup", data=body, headers=FORM)
    errors = (await response.get_json())["errors"]
    assert response.status_code == 400 and "name" in errors


async def test_form_bomb_of_urlencoded_fields_is_harmless(client: Any) -> None:
    body = "&".join(f"f{i}=x" for i in range(6_000)).encode()
    assert len(body) < LIMIT
    response = await client.post("/signup", data=body, headers=FORM)
    assert_clean_400(response, await response.get_json())


def multipart(
    fields: dict[str, str], boundary: str = "qaa-boundary"
) -> tuple[bytes, dict[str, str]]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def test_multipart_forms_are_read(client: Any) -> None:
    body, headers = multipart(
        {"name": "Ann", "email": "ann@example.com", "password": "correct horse battery"}
    )
    response = await client.post(
        "/signup", data=body, headers={**headers, "Accept": "application/json"}
    )
    assert response.status_code == 201
    assert (await response.get_json())["email"] == "ann@example.com"


async def test_multipart_bomb_of_parts_is_413(client: Any) -> None:
    body, headers = multipart({f"f{i}": "1" for i in range(1_000)}, boundary="b")
    assert len(body) < LIMIT
    response = await client.post("/signup", data=body, headers=headers)
    assert response.status_code == 413
    assert (await response.get_json())["message"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"--x\r\ngarbage without end", "multipart/form-data; boundary=x"),
        (b"no boundary at all", "multipart/form-data"),
        (
            b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
        ),
    ],
)
async def test_broken_multipart_is_400(client: Any, body: bytes, content_type: str) -> None:
    response = await client.post("/signup", data=body, headers={"Content-Type": content_type})
    assert_clean_400(response, await response.get_json())


@pytest.mark.parametrize("path", ANONYMOUS_POSTS)
@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
async def test_bodies_over_64_kib_are_413(client: Any, path: str, content_type: str) -> None:
    if "form" in content_type:
        body = b"name=" + b"a" * LIMIT
    else:
        body = b'{"name": "' + b"a" * LIMIT + b'"}'
    response = await client.post(path, data=body, headers={"Content-Type": content_type})
    assert response.status_code == 413
    assert "64 KiB" in (await response.get_json())["message"]


async def test_a_body_just_under_the_limit_is_read(client: Any) -> None:
    padding = "p" * (LIMIT - 200)
    body = json.dumps(
        {"name": "Ann", "email": "ann@example.com", "password": "horse battery", "pad": padding}
    ).encode()
    assert len(body) < LIMIT
    response = await client.post("/signup", data=body, headers=JSON)
    assert response.status_code == 201


async def test_signed_in_routes_parse_safely_too(client: Any, signed_in: SignedIn) -> None:
    auth = bearer(signed_in.tokens.access_token)
    for data in (b"[" * 60_000, b'{"name": NaN}', b"[]", b'{"name": "\\ud800"}'):
        response = await client.patch("/me", data=data, headers={**auth, **JSON})
        assert_clean_400(response, await response.get_json())
    big = await client.patch("/me", data=b"{" + b" " * LIMIT + b"}", headers={**auth, **JSON})
    assert big.status_code == 413


# A real server: chunked bodies, which carry no Content-Length --------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder: Path = tmp_path_factory.mktemp("parsing-server")
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'app.db'}",
        "INSTANCE_PATH": str(folder),
        "SECRET_KEY": "parsing-tests-secret-key-0123456789abcdef",
        **FAST_HASHING,
    }
    with running_server(env) as running:
        yield running


def chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    yield b'{"name": "'
    sent = 0
    while sent < total:
        yield b"a" * size
        sent += size
    yield b'"}'


def test_chunked_body_over_the_limit_is_413(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as http:
        response = http.post("/signup", content=chunks(LIMIT * 4), headers=JSON)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["message"]


def test_chunked_body_under_the_limit_is_read(server: Server) -> None:
    def small() -> Iterator[bytes]:
        yield b'{"name": "Chunk", "email": "chunk@example.com", '
        yield b'"password": "correct horse battery"}'

    with httpx.Client(base_url=server.url, timeout=20) as http:
        response = http.post("/signup", content=small(), headers=JSON)
    assert response.status_code == 201


def test_declared_length_over_the_limit_is_413_before_the_body(server: Server) -> None:
    # The server answers from the header alone; it never waits for 640 KiB to arrive.
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {LIMIT * 10}\r\n\r\n{{}}".encode()
        )
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413")


def test_server_survives_the_hostile_bodies(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as http:
        for raw in HOSTILE_JSON.values():
            assert http.post("/login", content=raw, headers=JSON).status_code == 400
        assert http.get("/healthz").status_code == 200
    assert "Traceback" not in server.log()


def raw_exchange(server: Server, request: bytes) -> bytes:
    """Send raw bytes to the server and read its whole answer (the request closes)."""
    port = int(server.url.rsplit(":", 1)[1])
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


# Hosts h11 lets through but werkzeug's IDNA encoding chokes on, or treats as no host.
BAD_HOSTS = [b"a" * 64 + b".example", b"a..b", b"x" * 300, "ex\u00e4mple.com".encode(), b"h:99999"]


def test_server_answers_bad_hosts_with_a_clean_400(server: Server) -> None:
    body = b'{"email": "a@example.com", "password": "x"}'
    for host in BAD_HOSTS:
        for start in (b"GET / ", b"GET /static/style.css ", b"GET /nope ", b"POST /login "):
            answer = raw_exchange(
                server,
                start + b"HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body,
            )
            head, _, content = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400"), (host, start, head)
            assert json.loads(content) == {"message": "Bad request"}
    with httpx.Client(base_url=server.url, timeout=20) as http:
        assert http.get("/healthz").status_code == 200
    assert "Traceback" not in server.log()


def test_server_sends_hostile_next_targets_somewhere_safe(server: Server) -> None:
    account = {"name": "Nex", "email": "next@example.com", "password": "correct horse battery"}
    browser = {"Accept": "text/html"}
    with httpx.Client(base_url=server.url, timeout=20) as http:
        assert http.post("/signup", json=account).status_code == 201
        login = {"email": account["email"], "password": account["password"], "next": "/a\x0cb"}
        answer = http.post("/login", data=login, headers=browser)
        assert answer.status_code == 302 and answer.headers["Location"] == "/dashboard"
        targets = {"/a\x1bb": "/dashboard", "/a\x7fb": "/dashboard", "/ok/path?x=1": "/ok/path?x=1"}
        for target, location in targets.items():
            answer = http.post("/token/refresh", data={"next": target}, headers=browser)
            assert answer.status_code == 302 and answer.headers["Location"] == location, target
        assert http.post("/token/refresh").status_code == 200, "the family lives"
        page = http.get("/login", params={"next": "/a\x0cb"}, headers=browser)
        assert 'name="next" value=""' in page.text
    assert "Traceback" not in server.log()


# Slow clients -----------------------------------------------------------------------------


async def test_a_stalled_body_times_out_with_408(app: Any) -> None:
    # The ASGI interface directly: the client sends headers and a trickle, then nothing.
    app.config["BODY_TIMEOUT"] = 1
    sent: list[dict[str, Any]] = []
    chunks = iter([{"type": "http.request", "body": b'{"email"', "more_body": True}])

    async def receive() -> dict[str, Any]:
        try:
            return next(chunks)
        except StopIteration:
            await asyncio.sleep(30)  # a client that never finishes its body
            return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/login",
        "raw_path": b"/login",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", b"application/json"),
            (b"content-length", b"100"),
        ],
        "extensions": {},
    }
    started = time.monotonic()
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    assert time.monotonic() - started < 5
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 408


def test_headers_trickled_slowly_are_cut_off(server: Server) -> None:
    # hypercorn's keep_alive_timeout (5 s) also bounds how long request headers may take.
    port = int(server.url.rsplit(":", 1)[1])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        while time.monotonic() - started < 14:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                time.sleep(1)
                sock.setblocking(False)
                try:
                    closed = sock.recv(1024) == b""
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            except OSError:
                closed = True
            if closed:
                break
    assert closed
    assert time.monotonic() - started < 12
