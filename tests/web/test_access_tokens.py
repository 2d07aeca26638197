"""SPEC §10: personal access tokens: made, listed and revoked by a login session; held to
their scopes; never a login session; ended by revocation, expiry, deactivation, deletion and
password reset."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import event, select, update

from quart_auth_app import create_app, token_required
from quart_auth_app.access_tokens import MAX_TOKENS, PREFIX
from quart_auth_app.models import AccessToken, User, utcnow
from quart_auth_app.recovery import RESET, token_for
from quart_auth_app.testing import (
    DEFAULT_PASSWORD,
    app_services,
    cookie_client,
    db_session,
    make_pat,
    make_user,
    pat_client,
    sign_in,
)
from quart_auth_app.tokens import token_digest

from ..conftest import BROWSER, bearer, running_app

INVALID = {"message": "Token is invalid!"}
SESSION_NEEDED = {"message": "A personal access token cannot do this: sign in with your password"}
# Each built-in route a token may call, and the one scope it needs.
SCOPED_ROUTES = [
    ("get", "/me", None, "profile:read"),
    ("get", "/dashboard", None, "profile:read"),
    ("patch", "/me", {"name": "Renamed"}, "profile:write"),
    ("get", "/me/sessions", None, "sessions"),
    ("get", "/admin/probe", None, "admin"),
]


def add_developer_routes(application: Quart) -> None:
    """An admin route as the admin API declares them, and a route with a scope of its own."""

    @application.get("/admin/probe")
    @token_required(roles=["admin"], scopes=["admin"])
    async def admin_probe(user: User) -> dict[str, str]:
        return {"admin": user.public_id}

    @application.get("/export")
    @token_required(scopes=["export"])
    async def export(user: User) -> dict[str, str]:
        return {"export_for": user.public_id}


@pytest.fixture
async def app(app_config: dict[str, Any]) -> AsyncIterator[Quart]:
    async with running_app(app_config, add_developer_routes) as application:
        yield application


@contextlib.asynccontextmanager
async def second_instance(app_config: dict[str, Any]) -> AsyncIterator[Quart]:
    """Another app on the same database, as another instance behind a load balancer."""
    application = create_app(app_config)
    add_developer_routes(application)
    async with application.test_app():
        yield application


async def session_headers(app: Quart, user: User) -> dict[str, str]:
    return bearer((await sign_in(app, user)).access_token)


async def create(app: Quart, user: User, **body: Any) -> Any:
    body = {"name": "ci", "scopes": ["profile:read"], **body}
    headers = await session_headers(app, user)
    return await app.test_client().post("/me/tokens", json=body, headers=headers)


async def token_row(app: Quart, token_id: str) -> AccessToken:
    async with db_session(app) as db:
        row = await db.scalar(select(AccessToken).where(AccessToken.id == token_id))
    assert row is not None
    return row


async def set_token(app: Quart, token_id: str, **values: Any) -> None:
    async with db_session(app) as db:
        await db.execute(update(AccessToken).where(AccessToken.id == token_id).values(**values))
        await db.commit()


async def get_me(app: Quart, secret: str) -> Any:
    return await app.test_client().get("/me", headers=bearer(secret))


async def test_a_made_token_is_shown_once_and_works_as_a_bearer(app: Quart, user: User) -> None:
    response = await create(app, user, name="deploy", scopes=["profile:read", "sessions"])
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    made = await response.get_json()
    assert set(made) == {"id", "name", "token", "scopes", "created_at", "expires_at"}
    assert made["name"] == "deploy"
    assert made["scopes"] == ["profile:read", "sessions"]
    assert made["expires_at"] is None
    assert made["token"].startswith(PREFIX)
    me = await get_me(app, made["token"])
    assert me.status_code == 200
    assert (await me.get_json())["email"] == user.email


async def test_only_the_digest_of_the_secret_is_stored(app: Quart, user: User) -> None:
    made = await (await create(app, user)).get_json()
    row = await token_row(app, made["id"])
    assert row.digest == token_digest(made["token"])
    stored = [getattr(row, column.key) for column in AccessToken.__table__.columns]
    assert not any(made["token"] in str(value) for value in stored)
    listed = await (
        await app.test_client().get("/me/tokens", headers=await session_headers(app, user))
    ).get_json()
    assert made["token"] not in str(listed)
    assert [token["id"] for token in listed["tokens"]] == [made["id"]]
    assert set(listed["tokens"][0]) == {
        "id",
        "name",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
    }


async def test_the_listing_shows_only_the_callers_live_tokens(app: Quart, user: User) -> None:
    other = await make_user(app, email="bo@example.com")
    await make_pat(app, other, name="not yours")
    kept = await (await create(app, user, name="kept")).get_json()
    gone = await (await create(app, user, name="gone")).get_json()
    old = await (await create(app, user, name="old")).get_json()
    await set_token(app, old["id"], expires_at=utcnow() - timedelta(seconds=1))
    headers = await session_headers(app, user)
    client = app.test_client()
    assert (await client.delete(f"/me/tokens/{gone['id']}", headers=headers)).status_code == 204
    listed = await (await client.get("/me/tokens", headers=headers)).get_json()
    assert [token["name"] for token in listed["tokens"]] == ["kept"]
    assert {"profile:read", "profile:write", "sessions", "admin", "export"} <= set(
        listed["known_scopes"]
    )
    assert kept["id"] == listed["tokens"][0]["id"]


async def test_a_revoked_token_is_refused_at_once(app: Quart, user: User) -> None:
    made = await (await create(app, user)).get_json()
    assert (await get_me(app, made["token"])).status_code == 200
    headers = await session_headers(app, user)
    client = app.test_client()
    assert (await client.delete(f"/me/tokens/{made['id']}", headers=headers)).status_code == 204
    refused = await get_me(app, made["token"])
    assert refused.status_code == 401
    assert await refused.get_json() == INVALID
    again = await client.delete(f"/me/tokens/{made['id']}", headers=headers)
    assert again.status_code == 404
    assert await again.get_json() == {"message": "Access token not found"}


async def test_another_users_token_cannot_be_revoked(app: Quart, user: User) -> None:
    other = await make_user(app, email="bo@example.com")
    theirs = await (await create(app, other)).get_json()
    headers = await session_headers(app, user)
    client = app.test_client()
    for token_id in (theirs["id"], "no-such-token", "x" * 300):
        assert (await client.delete(f"/me/tokens/{token_id}", headers=headers)).status_code == 404
    assert (await get_me(app, theirs["token"])).status_code == 200


async def test_revocation_holds_on_another_instance_on_the_next_request(
    app: Quart, app_config: dict[str, Any], user: User
) -> None:
    made = await (await create(app, user)).get_json()
    async with second_instance(app_config) as other:
        assert (await get_me(other, made["token"])).status_code == 200
        headers = await session_headers(app, user)
        response = await app.test_client().delete(f"/me/tokens/{made['id']}", headers=headers)
        assert response.status_code == 204
        refused = await get_me(other, made["token"])
        assert refused.status_code == 401
        assert await refused.get_json() == INVALID


async def test_an_expired_token_is_refused(app: Quart, user: User) -> None:
    made = await (await create(app, user, expires_in_days=30)).get_json()
    row = await token_row(app, made["id"])
    assert row.expires_at is not None
    assert timedelta(days=30) - (row.expires_at - row.created_at) < timedelta(seconds=1)
    assert (await get_me(app, made["token"])).status_code == 200
    await set_token(app, made["id"], expires_at=utcnow() - timedelta(seconds=1))
    refused = await get_me(app, made["token"])
    assert refused.status_code == 401
    assert await refused.get_json() == INVALID


@pytest.mark.parametrize("days", [0, 366, -1, "soon"])
async def test_a_lifetime_outside_one_to_365_days_is_refused(
    app: Quart, user: User, days: Any
) -> None:
    response = await create(app, user, expires_in_days=days)
    assert response.status_code == 400
    assert "expires_in_days" in (await response.get_json())["errors"]


async def test_the_longest_lifetime_is_365_days(app: Quart, user: User) -> None:
    made = await (await create(app, user, expires_in_days=365)).get_json()
    row = await token_row(app, made["id"])
    assert row.expires_at is not None
    assert row.expires_at - row.created_at == timedelta(days=365)


@pytest.mark.parametrize(
    ("scopes", "reason"),
    [
        ([], "Choose at least one"),
        (["profile:reed"], "Unknown scope 'profile:reed'"),
        (["Not A Scope"], "Unknown scope"),
        ("", "Choose at least one"),
    ],
)
async def test_scopes_must_be_named_and_known(
    app: Quart, user: User, scopes: Any, reason: str
) -> None:
    response = await create(app, user, scopes=scopes)
    assert response.status_code == 400
    assert reason in (await response.get_json())["errors"]["scopes"]


async def test_a_scope_a_developer_route_declares_can_be_given(app: Quart, user: User) -> None:
    made = await (await create(app, user, scopes="export profile:read")).get_json()
    assert made["scopes"] == ["export", "profile:read"]
    response = await app.test_client().get("/export", headers=bearer(made["token"]))
    assert response.status_code == 200


async def test_a_form_post_may_send_one_scopes_field_per_scope(app: Quart, user: User) -> None:
    headers = {**await session_headers(app, user), "Accept": "application/json"}
    response = await app.test_client().post(
        "/me/tokens",
        data="name=form&scopes=profile%3Aread&scopes=sessions&expires_in_days=",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201, await response.get_json()
    assert (await response.get_json())["scopes"] == ["profile:read", "sessions"]


async def test_an_account_holds_a_bounded_number_of_tokens(app: Quart, user: User) -> None:
    for index in range(MAX_TOKENS):
        await make_pat(app, user, name=f"t{index}")
    refused = await create(app, user)
    assert refused.status_code == 400
    assert f"{MAX_TOKENS} access tokens" in (await refused.get_json())["message"]


@pytest.mark.parametrize(("method", "path", "body", "scope"), SCOPED_ROUTES)
async def test_each_built_in_route_needs_its_scope(
    app: Quart, method: str, path: str, body: Any, scope: str
) -> None:
    admin = await make_user(app, email="root@example.com", roles=["admin"])
    others = {"profile:read", "profile:write", "sessions", "admin"} - {scope}
    call = getattr(app.test_client(), method)
    without = await call(path, json=body, headers=bearer(await make_pat(app, admin, others)))
    assert without.status_code == 403
    assert await without.get_json() == {"message": "Insufficient permissions"}
    assert without.headers["WWW-Authenticate"] == (
        f'Bearer error="insufficient_scope", scope="{scope}"'
    )
    with_scope = await call(path, json=body, headers=bearer(await make_pat(app, admin, [scope])))
    assert with_scope.status_code == 200


async def test_an_admin_scope_without_the_admin_role_is_refused(app: Quart, user: User) -> None:
    client = await pat_client(app, user, ["admin"])
    response = await client.get("/admin/probe")
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="admin"'
    )


async def test_a_login_session_is_held_to_roles_only(app: Quart) -> None:
    admin = await make_user(app, email="root@example.com", roles=["admin"])
    headers = await session_headers(app, admin)
    for method, path, body, _scope in SCOPED_ROUTES:
        response = await getattr(app.test_client(), method)(path, json=body, headers=headers)
        assert response.status_code == 200, path


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/me/password", {"current_password": DEFAULT_PASSWORD, "new_password": "x" * 12}),
        ("delete", "/me", {"password": DEFAULT_PASSWORD}),
        ("post", "/me/tokens", {"name": "more", "scopes": ["profile:read"]}),
        ("get", "/me/tokens", None),
        ("delete", "/me/tokens/anything", None),
        ("post", "/logout", None),
        ("post", "/logout/all", None),
        ("get", "/account", None),
        ("post", "/account/tokens", {"name": "more", "scopes": "profile:read"}),
    ],
)
async def test_a_token_never_does_what_needs_a_login_session(
    app: Quart, user: User, method: str, path: str, body: Any
) -> None:
    every = ["profile:read", "profile:write", "sessions", "admin", "export"]
    secret = await make_pat(app, user, every)
    response = await getattr(app.test_client(), method)(path, json=body, headers=bearer(secret))
    assert response.status_code == 403
    assert await response.get_json() == SESSION_NEEDED
    assert response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'
    # Nothing happened: the password, the account and the token are as they were.
    assert (await get_me(app, secret)).status_code == 200
    login = {"email": user.email, "password": DEFAULT_PASSWORD}
    assert (await app.test_client().post("/login", json=login)).status_code == 200


async def test_a_token_survives_logout_and_logout_all(app: Quart, user: User) -> None:
    secret = await make_pat(app, user)
    client = app.test_client()
    assert (
        await client.post("/logout", headers=await session_headers(app, user))
    ).status_code == 200
    assert (await get_me(app, secret)).status_code == 200
    everywhere = await client.post("/logout/all", headers=await session_headers(app, user))
    assert everywhere.status_code == 200
    assert (await get_me(app, secret)).status_code == 200


async def test_deactivation_refuses_a_token_at_once(app: Quart, user: User) -> None:
    secret = await make_pat(app, user)
    assert (await get_me(app, secret)).status_code == 200
    async with db_session(app) as db:
        await db.execute(update(User).where(User.id == user.id).values(is_active=False))
        await db.commit()
    refused = await get_me(app, secret)
    assert refused.status_code == 401
    assert await refused.get_json() == INVALID


async def test_deleting_the_account_ends_its_tokens(app: Quart, user: User) -> None:
    secret = await make_pat(app, user)
    headers = await session_headers(app, user)
    deleted = await app.test_client().delete(
        "/me", json={"password": DEFAULT_PASSWORD}, headers=headers
    )
    assert deleted.status_code == 204
    assert (await get_me(app, secret)).status_code == 401
    async with db_session(app) as db:
        assert await db.scalar(select(AccessToken).where(AccessToken.user_id == user.id)) is None


async def test_a_password_reset_ends_every_token(app: Quart, user: User) -> None:
    secrets = [await make_pat(app, user, name=name) for name in ("one", "two")]
    services = app_services(app)
    async with db_session(app) as db:
        found = await token_for(db, services.throttle, RESET, user.email)
        await db.commit()  # token_for leaves the commit to its caller (the outbox's transaction)
    assert found is not None
    body = {"token": found[1], "new_password": "a brand new passphrase"}
    assert (await app.test_client().post("/password/reset", json=body)).status_code == 204
    for secret in secrets:
        assert (await get_me(app, secret)).status_code == 401


async def test_a_signed_in_password_change_keeps_tokens(app: Quart, user: User) -> None:
    secret = await make_pat(app, user)
    body = {"current_password": DEFAULT_PASSWORD, "new_password": "another fine passphrase"}
    headers = await session_headers(app, user)
    changed = await app.test_client().post("/me/password", json=body, headers=headers)
    assert changed.status_code == 204
    assert (await get_me(app, secret)).status_code == 200


@pytest.mark.parametrize(
    "sent",
    [
        PREFIX,
        PREFIX + "short",
        PREFIX + "A" * 43,  # the right shape, but no such token
        PREFIX + "A" * 42 + "!",
        PREFIX + "A" * 44,
    ],
)
async def test_a_malformed_or_unknown_token_is_invalid(app: Quart, sent: str) -> None:
    response = await get_me(app, sent)
    assert response.status_code == 401
    assert await response.get_json() == INVALID


async def test_a_token_in_the_access_cookie_is_refused(app: Quart, user: User) -> None:
    secret = await make_pat(app, user)
    client = app.test_client()
    client.set_cookie("localhost", "jwt_token", secret)
    response = await client.get("/me")
    assert response.status_code == 401
    assert await response.get_json() == INVALID


async def test_a_token_is_never_decoded_as_a_jwt(
    app: Quart, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = await make_pat(app, user)
    tokens = app_services(app).tokens
    decoded: list[str] = []
    verify = tokens.verify

    def watched(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return verify(token, *args, **kwargs)

    monkeypatch.setattr(tokens, "verify", watched)
    assert (await get_me(app, secret)).status_code == 200
    cookie = app.test_client()
    cookie.set_cookie("localhost", "jwt_token", secret)
    assert (await cookie.get("/me")).status_code == 401
    assert decoded == []
    session = await session_headers(app, user)
    assert (await app.test_client().get("/me", headers=session)).status_code == 200
    assert len(decoded) == 1  # the watch sees JWTs


async def test_the_check_is_at_most_one_statement(app: Quart, user: User) -> None:
    secret = await make_pat(app, user)
    assert (await get_me(app, secret)).status_code == 200
    services = app_services(app)
    await services.sessions.usage.idle()  # the first use's last_used_at write is done
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sync_engine = services.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        assert (await get_me(app, secret)).status_code == 200
        await services.sessions.usage.idle()
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    # On an SQLite file the accelerated store reads on its own connection: none through here.
    assert len(statements) <= 1
    assert all("access_tokens" in statement for statement in statements)


async def test_last_use_is_written_at_most_once_a_minute(app: Quart, user: User) -> None:
    made = await (await create(app, user)).get_json()
    usage = app_services(app).sessions.usage
    assert (await token_row(app, made["id"])).last_used_at is None
    assert (await get_me(app, made["token"])).status_code == 200
    await usage.idle()
    first = (await token_row(app, made["id"])).last_used_at
    assert first is not None
    assert (await get_me(app, made["token"])).status_code == 200
    await usage.idle()
    assert (await token_row(app, made["id"])).last_used_at == first
    await set_token(app, made["id"], last_used_at=first - timedelta(seconds=61))
    assert (await get_me(app, made["token"])).status_code == 200
    await usage.idle()
    latest = (await token_row(app, made["id"])).last_used_at
    assert latest is not None and latest > first
    listed = await (
        await app.test_client().get("/me/tokens", headers=await session_headers(app, user))
    ).get_json()
    assert listed["tokens"][0]["last_used_at"] is not None


async def test_a_token_is_not_refreshed(app: Quart, user: User) -> None:
    secret = await make_pat(app, user)
    response = await app.test_client().post("/token/refresh", json={"refresh_token": secret})
    assert response.status_code == 400
    message = (await response.get_json())["message"]
    assert message.startswith("A personal access token is not refreshed")
    assert (await get_me(app, secret)).status_code == 200


async def test_made_and_revoked_tokens_are_logged_without_the_secret(
    app: Quart, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="quart_auth_app.access_tokens")
    made = await (await create(app, user)).get_json()
    headers = await session_headers(app, user)
    await app.test_client().delete(f"/me/tokens/{made['id']}", headers=headers)
    lines = [record.getMessage() for record in caplog.records]
    assert f"event=access_token.created user={user.public_id} token_id={made['id']}" in lines[0]
    assert lines[1] == f"event=access_token.revoked user={user.public_id} token_id={made['id']}"
    assert not any(made["token"] in line for line in caplog.text.splitlines())


async def test_the_account_page_makes_shows_once_and_revokes_tokens(app: Quart, user: User) -> None:
    client = await cookie_client(app, user)
    form = {"Content-Type": "application/x-www-form-urlencoded", **BROWSER}
    body = "name=laptop+script&scopes=profile%3Aread&scopes=sessions&expires_in_days=90"
    made = await client.post("/account/tokens", data=body, headers=form)
    assert made.status_code == 200
    assert made.headers["Cache-Control"] == "no-store"
    page = await made.get_data(as_text=True)
    secret = re.search(r'<code id="new-token-value">(qaa_pat_[\w-]+)</code>', page)
    assert secret is not None
    assert "/static/account.js" in page
    assert (await get_me(app, secret[1])).status_code == 200
    listed = await (await client.get("/account", headers=BROWSER)).get_data(as_text=True)
    assert "laptop script" in listed and "profile:read, sessions" in listed
    assert secret[1] not in listed
    token_id = re.search(r'action="/account/tokens/([\w-]+)/revoke"', listed)
    assert token_id is not None
    revoked = await client.post(f"/account/tokens/{token_id[1]}/revoke", headers=BROWSER)
    assert revoked.status_code == 302
    assert (await get_me(app, secret[1])).status_code == 401
    assert "laptop script" not in await (await client.get("/account", headers=BROWSER)).get_data(
        as_text=True
    )


async def test_the_account_page_says_what_is_wrong_with_a_token_form(
    app: Quart, user: User
) -> None:
    client = await cookie_client(app, user)
    form = {"Content-Type": "application/x-www-form-urlencoded", **BROWSER}
    refused = await client.post("/account/tokens", data="name=nothing", headers=form)
    assert refused.status_code == 400
    page = await refused.get_data(as_text=True)
    assert 'id="access-tokens"' in page and "Please check the scopes below." in page
    assert 'id="new-token-value"' not in page


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/me/mfa/totp"),
        ("POST", "/me/mfa/totp/confirm"),
        ("POST", "/me/mfa/recovery-codes"),
        ("DELETE", "/me/mfa/totp"),
        ("POST", "/reauth"),
    ],
)
async def test_a_token_never_manages_second_factors(
    app: Quart, user: User, method: str, path: str
) -> None:
    secret = await make_pat(app, user, scopes=["profile:read", "profile:write", "sessions"])
    body = {"password": DEFAULT_PASSWORD, "code": "123456"}
    refused = await app.test_client().open(path, method=method, json=body, headers=bearer(secret))
    assert refused.status_code == 403
    assert await refused.get_json() == SESSION_NEEDED


async def test_making_a_token_needs_a_recent_sign_in(
    app: Quart, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quart_auth_app import sessions

    real = sessions.utcnow
    monkeypatch.setattr(sessions, "utcnow", lambda: real() - timedelta(minutes=20))
    stale = await sign_in_tokens(app, user)
    monkeypatch.setattr(sessions, "utcnow", real)
    body = {"name": "ci", "scopes": ["profile:read"]}
    refused = await app.test_client().post("/me/tokens", json=body, headers=bearer(stale))
    assert refused.status_code == 401
    assert await refused.get_json() == {"message": "Recent authentication required"}
    assert "insufficient_user_authentication" in refused.headers["WWW-Authenticate"]
    made = await app.test_client().post(
        "/me/tokens", json=body, headers=await session_headers(app, user)
    )
    assert made.status_code == 201


async def test_an_admin_token_may_use_the_admin_writes_without_a_sign_in(app: Quart) -> None:
    # Fresh-only routes hold sign-ins to their age; a token was made by a fresh one and is
    # held to its scopes instead.
    admin = await make_user(app, roles=["admin"])
    other = await make_user(app)
    secret = await make_pat(app, admin, scopes=["admin"])
    changed = await app.test_client().patch(
        f"/admin/users/{other.public_id}", json={"name": "Renamed"}, headers=bearer(secret)
    )
    assert changed.status_code == 200
    assert (await changed.get_json())["name"] == "Renamed"


async def sign_in_tokens(app: Quart, user: User) -> str:
    from quart_auth_app.testing import sign_in

    return (await sign_in(app, user)).access_token
