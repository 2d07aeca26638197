"""SPEC §4, §7: one account per email however it is typed, the same on SQLite and PostgreSQL.

An account is found by rules.email_key of its address (stored in users.email_key, unique);
the address itself is kept as typed and shown back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from alembic import command
from quart import Quart
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from werkzeug.security import generate_password_hash

from quart_auth_app.migrate import alembic_config, upgrade_database
from quart_auth_app.models import Base, User
from quart_auth_app.rules import email_key
from quart_auth_app.testing import db_session

from ..conftest import BROWSER, bearer
from ..mail_server import Inbox, with_mail
from ..servers import free_port
from .test_mail_flows import link_in, mails_to, path_of, token_of

PASSWORD = "correct horse battery"
ULRICH = "Ülrich@example.com"
# The same address typed otherwise: lower and upper case, and decomposed (U + combining ¨).
ULRICH_TYPED = [
    "ülrich@example.com",
    "ÜLRICH@EXAMPLE.COM",
    "Ülrich@EXAMPLE.com",
    "U\u0308lrich@example.com",
    "u\u0308LRICH@example.com",
]
TAKEN = {"message": "User already exists. Please login."}


async def signup(client: Any, email: str, name: str = "Ülrich") -> Any:
    return await client.post("/signup", json={"name": name, "email": email, "password": PASSWORD})


async def login(client: Any, email: str, password: str = PASSWORD) -> Any:
    return await client.post("/login", json={"email": email, "password": password})


async def users_in(app: Quart) -> int:
    async with db_session(app) as db:
        return int((await db.execute(select(func.count()).select_from(User))).scalar_one())


# --- signup and login ----------------------------------------------------------------------


async def test_signup_keeps_the_address_as_typed(client: Any) -> None:
    response = await signup(client, ULRICH)
    assert response.status_code == 201
    assert (await response.get_json())["email"] == ULRICH


@pytest.mark.parametrize("typed", ULRICH_TYPED)
async def test_login_by_any_case_with_a_bearer_token(client: Any, typed: str) -> None:
    assert (await signup(client, ULRICH)).status_code == 201
    response = await login(client, typed)
    assert response.status_code == 200, typed
    access = (await response.get_json())["access_token"]
    me = await client.get("/me", headers=bearer(access))
    assert (await me.get_json())["email"] == ULRICH
    dashboard = await client.get("/dashboard", headers=bearer(access))
    assert (await dashboard.get_json())["message"] == "Welcome Ülrich! You are logged in."


@pytest.mark.parametrize("typed", ULRICH_TYPED)
async def test_login_by_any_case_in_a_browser(client: Any, typed: str) -> None:
    assert (await signup(client, ULRICH)).status_code == 201
    response = await client.post(
        "/login", form={"email": typed, "password": PASSWORD}, headers=BROWSER
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/dashboard")
    page = await client.get("/dashboard", headers=BROWSER)
    assert page.status_code == 200
    assert "Welcome Ülrich! You are logged in." in await page.get_data(as_text=True)


async def test_a_wrong_password_is_refused_by_any_case(client: Any) -> None:
    assert (await signup(client, ULRICH)).status_code == 201
    response = await login(client, "ÜLRICH@EXAMPLE.COM", "not the password at all")
    assert response.status_code == 401


@pytest.mark.parametrize(
    "again",
    ["ülrich@example.com", "ÜLRICH@EXAMPLE.COM", "Ülrich@example.com", "u\u0308lrich@example.com"],
)
async def test_the_same_address_typed_otherwise_is_one_account(
    app: Quart, client: Any, again: str
) -> None:
    assert (await signup(client, ULRICH)).status_code == 201
    response = await signup(client, again, name="Someone else")
    assert response.status_code == 400
    assert await response.get_json() == TAKEN
    tutorial_form = await client.post(
        "/signup", form={"name": "Someone else", "email": again, "password": PASSWORD}
    )
    assert tutorial_form.status_code == 400 and await tutorial_form.get_json() == TAKEN
    assert await users_in(app) == 1


@pytest.mark.parametrize(
    ("first", "again"),
    [
        # Case folding, not lower case: ß upper-cases to SS, and Greek has two small sigmas.
        ("Straße@example.com", "STRASSE@EXAMPLE.COM"),
        ("Straße@example.com", "strasse@example.com"),
        ("ΟΔΥΣΣΕΥΣ@example.com", "οδυσσευς@example.com"),
        # The domain as IDNA maps it: punycode and Unicode name one domain.
        ("bea@bücher.example", "BEA@XN--BCHER-KVA.EXAMPLE"),
    ],
)
async def test_one_account_under_case_folding(client: Any, first: str, again: str) -> None:
    assert (await signup(client, first)).status_code == 201
    assert (await login(client, again)).status_code == 200
    assert await (await signup(client, again, name="Twin")).get_json() == TAKEN


async def test_domains_that_idna_tells_apart_are_two_accounts(client: Any) -> None:
    # IDNA 2008 keeps ß in domain names: straße.example and strasse.example are two domains.
    assert (await signup(client, "ann@straße.example")).status_code == 201
    assert (await signup(client, "ann@strasse.example")).status_code == 201
    response = await login(client, "ANN@STRASSE.EXAMPLE")
    me = await client.get("/me", headers=bearer((await response.get_json())["access_token"]))
    assert (await me.get_json())["email"] == "ann@strasse.example"


async def test_the_database_refuses_a_second_row_with_the_same_key(app: Quart, client: Any) -> None:
    assert (await signup(client, ULRICH)).status_code == 201
    twin = User(
        name="Twin",
        email="ülrich@example.com",
        email_key=email_key("ülrich@example.com"),
        password="x",
    )
    async with db_session(app) as db:
        db.add(twin)
        with pytest.raises(IntegrityError):
            await db.commit()
    assert await users_in(app) == 1


# --- mail: password reset and verification resend ----------------------------------------


@pytest.fixture
def smtp_server(inbox: Inbox) -> Iterator[Controller]:
    # SMTPUTF8: the recipient's local part is not ASCII.
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=True)
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture
def app_config(app_config: dict[str, Any], smtp_server: Controller) -> dict[str, Any]:
    return with_mail(app_config, smtp_server)


async def test_forgot_password_finds_the_account_by_any_case(
    app: Quart, client: Any, inbox: Inbox
) -> None:
    assert (await signup(client, ULRICH)).status_code == 201
    response = await client.post("/password/forgot", json={"email": "ÜLRICH@EXAMPLE.COM"})
    assert response.status_code == 202
    resets = [m for m in await mails_to(app, inbox, ULRICH) if "Reset" in m["Subject"]]
    assert len(resets) == 1
    new = "a brand new passphrase"
    token = token_of(link_in(resets[0]))
    reset = await client.post("/password/reset", json={"token": token, "new_password": new})
    assert reset.status_code == 204
    assert (await login(client, "ülrich@example.com", new)).status_code == 200


async def test_verification_resend_finds_the_account_by_any_case(
    app: Quart, client: Any, inbox: Inbox
) -> None:
    assert (await signup(client, ULRICH)).status_code == 201
    response = await client.post("/verify/request", json={"email": "ülrich@EXAMPLE.COM"})
    assert response.status_code == 202
    verifications = [m for m in await mails_to(app, inbox, ULRICH) if "Verify" in m["Subject"]]
    assert len(verifications) == 2  # the one signup sent, and the one asked for
    verified = await client.get(path_of(link_in(verifications[-1])))
    assert verified.status_code == 200
    access = (await (await login(client, "ÜLRICH@EXAMPLE.COM")).get_json())["access_token"]
    assert (await (await client.get("/me", headers=bearer(access))).get_json())["email_verified"]


# --- accounts made before the key existed --------------------------------------------------


async def database_at_0001(url: str, emails: list[str]) -> None:
    """A database of the first revision holding users with a werkzeug hash of PASSWORD."""
    engine = create_async_engine(url, poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0001")
    hashed = generate_password_hash(PASSWORD, method="pbkdf2:sha256")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (public_id, name, email, password, email_verified, created_at)"
                " VALUES (:pid, 'Old', :email, :hash, false, CURRENT_TIMESTAMP)"
            ),
            [{"pid": f"old-{i}", "email": email, "hash": hashed} for i, email in enumerate(emails)],
        )
    await engine.dispose()


@pytest.fixture
async def upgraded_app(app_config: dict[str, Any], database_url: str, tmp_path: Path) -> Any:
    from quart_auth_app import create_app

    await database_at_0001(database_url, [ULRICH, "bert@example.com"])
    await upgrade_database(database_url, tmp_path)  # what `quart-auth-app db upgrade` does
    application = create_app(app_config)
    async with application.test_app():
        yield application
    if database_url.startswith("postgresql"):  # leave the shared test database as others expect
        engine = create_async_engine(database_url, poolclass=NullPool)
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE alembic_version"))
        await engine.dispose()


async def test_an_account_from_before_the_upgrade_logs_in_by_any_case(upgraded_app: Quart) -> None:
    client = upgraded_app.test_client()
    for typed in ULRICH_TYPED:
        assert (await login(client, typed)).status_code == 200, typed
    assert await (await signup(client, "ülrich@example.com")).get_json() == TAKEN
    assert (await signup(client, "new@example.com")).status_code == 201
