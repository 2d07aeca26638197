"""SPEC §3 rule 2: a client written for the tutorial (curl -d, Postman form-data) works unchanged.

It posts a form with `Accept: */*` or no Accept at all, follows the tutorial's redirects and
carries the `jwt_token` cookie; its errors are the tutorial's JSON messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from quart import Quart

from quart_auth_app.testing import make_user
from quart_auth_app.web.auth import ACCESS_COOKIE, REFRESH_COOKIE

from ..conftest import bearer

ANN = {"name": "Ann", "email": "ann@example.com", "password": "correct horse battery"}
CREDENTIALS = {"email": ANN["email"], "password": ANN["password"]}
BOUNDARY = "tutorial-client-boundary"


def encode(encoding: str, fields: dict[str, str]) -> tuple[bytes, str]:
    """A form body and its Content-Type, as curl -d (urlencoded) or Postman form-data send it."""
    if encoding == "urlencoded":
        return urlencode(fields).encode(), "application/x-www-form-urlencoded"
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    body = "".join(parts) + f"--{BOUNDARY}--\r\n"
    return body.encode(), f"multipart/form-data; boundary={BOUNDARY}"


@dataclass(frozen=True)
class FormCaller:
    """A client posting forms in one encoding, sending `accept` (None: no Accept header)."""

    encoding: str
    accept: str | None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        """The headers it sends on every request, its follow-up GETs too."""
        return {**self.extra, **({} if self.accept is None else {"Accept": self.accept})}

    async def post(self, client: Any, path: str, fields: dict[str, str]) -> Any:
        body, content_type = encode(self.encoding, fields)
        return await client.post(
            path, data=body, headers={"Content-Type": content_type, **self.headers}
        )


@pytest.fixture(
    params=[
        FormCaller("urlencoded", None),
        FormCaller("urlencoded", "*/*"),
        FormCaller("multipart", None),
        FormCaller("multipart", "*/*"),
    ],
    ids=["urlencoded-no-accept", "urlencoded-any", "multipart-no-accept", "multipart-any"],
)
def tutorial(request: pytest.FixtureRequest) -> FormCaller:
    """A client as the tutorial's are: each form encoding, with `*/*` and with no Accept."""
    caller: FormCaller = request.param
    return caller


@pytest.fixture
async def ann(app: Quart) -> Any:
    return await make_user(app, name=ANN["name"], email=ANN["email"], password=ANN["password"])


def set_cookies(response: Any) -> dict[str, str]:
    return {value.split("=", 1)[0]: value for value in response.headers.getlist("Set-Cookie")}


def cookie_value(response: Any, name: str) -> str:
    return set_cookies(response)[name].split(";", 1)[0].split("=", 1)[1]


async def test_signup_redirects_to_login(app: Quart, tutorial: FormCaller) -> None:
    client = app.test_client()
    response = await tutorial.post(client, "/signup", ANN)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert not response.headers.getlist("Set-Cookie"), "the tutorial sets no cookie at signup"
    login = await client.post("/login", json=CREDENTIALS)
    assert login.status_code == 200, "the account exists"


async def test_duplicate_signup_is_the_tutorials_json_400(app: Quart, tutorial: FormCaller) -> None:
    client = app.test_client()
    assert (await tutorial.post(client, "/signup", ANN)).status_code == 302
    again = await tutorial.post(client, "/signup", {**ANN, "email": "ANN@example.com"})
    assert again.status_code == 400
    assert again.mimetype == "application/json"
    assert await again.get_json() == {"message": "User already exists. Please login."}


async def test_invalid_signup_is_json_with_field_reasons(app: Quart, tutorial: FormCaller) -> None:
    response = await tutorial.post(
        app.test_client(), "/signup", {"name": "Ann", "email": "nope", "password": "short"}
    )
    assert response.status_code == 400
    assert set((await response.get_json())["errors"]) == {"email", "password"}


async def test_login_redirects_to_dashboard_with_the_cookies(
    app: Quart, ann: Any, tutorial: FormCaller
) -> None:
    client = app.test_client()
    response = await tutorial.post(client, "/login", CREDENTIALS)
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"
    cookies = set_cookies(response)
    assert set(cookies) == {ACCESS_COOKIE, REFRESH_COOKIE}
    for cookie in cookies.values():
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http, COOKIE_SECURE=auto
    dashboard = await client.get("/dashboard", headers=tutorial.headers)
    assert dashboard.status_code == 200
    assert await dashboard.get_json() == {"message": "Welcome Ann! You are logged in."}
    # The cookie holds an ordinary access token: an API client may send it as a bearer.
    token = cookie_value(response, ACCESS_COOKIE)
    as_bearer = await app.test_client().get("/dashboard", headers=bearer(token))
    assert as_bearer.status_code == 200


async def test_wrong_password_is_the_tutorials_json_401(
    app: Quart, ann: Any, tutorial: FormCaller
) -> None:
    for credentials in (
        {**CREDENTIALS, "password": "not the password"},
        {**CREDENTIALS, "email": "bob@example.com"},
    ):
        response = await tutorial.post(app.test_client(), "/login", credentials)
        assert response.status_code == 401
        assert await response.get_json() == {"message": "Invalid email or password"}
        assert not response.headers.getlist("Set-Cookie")


async def test_login_next_is_followed_to_local_paths_only(
    app: Quart, ann: Any, tutorial: FormCaller
) -> None:
    local = await tutorial.post(app.test_client(), "/login", {**CREDENTIALS, "next": "/account"})
    assert local.status_code == 302 and local.headers["Location"] == "/account"
    away = await tutorial.post(
        app.test_client(), "/login", {**CREDENTIALS, "next": "https://evil.example/"}
    )
    assert away.status_code == 302 and away.headers["Location"] == "/dashboard"


async def test_dashboard_without_the_cookie_is_json_401(app: Quart, tutorial: FormCaller) -> None:
    response = await app.test_client().get("/dashboard", headers=tutorial.headers)
    assert response.status_code == 401
    assert await response.get_json() == {"message": "Token is missing!"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_logout_redirects_to_login_and_clears_the_cookies(
    app: Quart, ann: Any, tutorial: FormCaller
) -> None:
    client = app.test_client()
    login = await tutorial.post(client, "/login", CREDENTIALS)
    token = cookie_value(login, ACCESS_COOKIE)
    response = await tutorial.post(client, "/logout", {})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    cleared = set_cookies(response)
    assert set(cleared) == {ACCESS_COOKIE, REFRESH_COOKIE}
    assert all(value.split(";", 1)[0].endswith("=") for value in cleared.values())
    assert all("Max-Age=0" in value for value in cleared.values())
    assert client.cookie_jar is not None and not list(client.cookie_jar)
    after = await client.get("/dashboard", headers=tutorial.headers)
    assert after.status_code == 401
    assert await after.get_json() == {"message": "Token is missing!"}
    # The session ended on the server too, not only in this client's cookie jar.
    revoked = await app.test_client().get("/dashboard", headers=bearer(token))
    assert revoked.status_code == 401
    assert await revoked.get_json() == {"message": "Token is invalid!"}


async def test_logout_form_with_a_bearer_token_redirects_too(app: Quart, ann: Any) -> None:
    login = await app.test_client().post("/login", json=CREDENTIALS)
    token = (await login.get_json())["access_token"]
    curl = FormCaller("urlencoded", "*/*", bearer(token))  # curl -d '' -H 'Authorization: ...'
    response = await curl.post(app.test_client(), "/logout", {})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert (await app.test_client().get("/dashboard", headers=bearer(token))).status_code == 401


async def test_logout_without_a_token_is_json_401_not_a_redirect(
    app: Quart, tutorial: FormCaller
) -> None:
    response = await tutorial.post(app.test_client(), "/logout", {})
    assert response.status_code == 401
    assert await response.get_json() == {"message": "Token is missing!"}
    assert "Location" not in response.headers


async def test_a_form_asking_for_json_gets_json(app: Quart) -> None:
    """SPEC §3 rule 3: `Accept: application/json` makes a form post an API call."""
    for encoding in ("urlencoded", "multipart"):
        api = FormCaller(encoding, "application/json")
        client = app.test_client()
        email = f"{encoding}@example.com"
        signup = await api.post(client, "/signup", {**ANN, "email": email})
        assert signup.status_code == 201
        assert (await signup.get_json())["email"] == email
        login = await api.post(client, "/login", {"email": email, "password": ANN["password"]})
        assert login.status_code == 200
        assert login.headers["Cache-Control"] == "no-store"
        assert not login.headers.getlist("Set-Cookie")
        tokens = await login.get_json()
        assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
        with_bearer = FormCaller(encoding, "application/json", bearer(tokens["access_token"]))
        logout = await with_bearer.post(client, "/logout", {})
        assert logout.status_code == 200
        assert await logout.get_json() == {"message": "Logged out."}


async def test_json_bodies_get_json_whatever_they_accept(app: Quart) -> None:
    client = app.test_client()
    signup = await client.post("/signup", json=ANN, headers={"Accept": "*/*"})
    assert signup.status_code == 201
    login = await client.post("/login", json=CREDENTIALS, headers={"Accept": "*/*"})
    assert login.status_code == 200 and "access_token" in await login.get_json()


async def test_other_routes_keep_answering_forms_with_json(app: Quart, ann: Any) -> None:
    """Rule 2 covers the tutorial's three routes only: refresh and logout-all stay JSON."""
    client = app.test_client()
    tokens = await (await client.post("/login", json=CREDENTIALS)).get_json()
    curl = FormCaller("urlencoded", "*/*")
    refreshed = await curl.post(
        client, "/token/refresh", {"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
    fresh = await refreshed.get_json()
    assert set(fresh) >= {"access_token", "refresh_token"}
    everywhere = FormCaller("urlencoded", "*/*", bearer(fresh["access_token"]))
    out = await everywhere.post(client, "/logout/all", {})
    assert out.status_code == 200
    assert await out.get_json() == {"message": "Logged out everywhere."}
