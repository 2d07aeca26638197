"""SPEC §6: password reset and email verification, delivered to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from quart import Quart
from sqlalchemy import update

from quart_auth_app import recovery as mail_flows
from quart_auth_app.config import ConfigError, load_settings
from quart_auth_app.mail import parse_mail_url
from quart_auth_app.models import MailToken, utcnow
from quart_auth_app.testing import (
    DEFAULT_PASSWORD,
    db_session,
    deliver_mail,
    make_user,
    sign_in,
)

from ..conftest import BROWSER, bearer, running_app
from ..mail_server import Inbox, with_mail
from ..servers import free_port

SIGNUP = {"name": "Ann", "email": "ann@example.com", "password": "correct horse battery"}
NEW_PASSWORD = "a brand new passphrase"
INVALID = {"message": "Invalid or expired token"}
LINK = re.compile(r"https?://\S+")


@pytest.fixture
def app_config(app_config: dict[str, Any], smtp_server: Controller) -> dict[str, Any]:
    return with_mail(app_config, smtp_server)


async def settle(app: Quart) -> None:
    """Wait until the outbox has tried every mail the requests so far queued."""
    await deliver_mail(app)


async def mails_to(app: Quart, inbox: Inbox, address: str) -> list[EmailMessage]:
    await settle(app)
    return [message for message in inbox.messages if message["To"] == address]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def link_in(message: EmailMessage) -> str:
    found = LINK.findall(text_of(message))
    assert len(found) == 1, text_of(message)
    link: str = found[0]
    return link


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def token_of(link: str) -> str:
    return urlsplit(link).query.removeprefix("token=")


async def only_link(app: Quart, inbox: Inbox, address: str) -> str:
    messages = await mails_to(app, inbox, address)
    assert len(messages) == 1
    return link_in(messages[0])


async def reset_link(app: Quart, client: Any, inbox: Inbox, email: str = "ann@example.com") -> str:
    response = await client.post("/password/forgot", json={"email": email})
    assert response.status_code == 202
    return link_in((await mails_to(app, inbox, email))[-1])


async def login(client: Any, password: str, email: str = "ann@example.com") -> Any:
    return await client.post("/login", json={"email": email, "password": password})


# --- verification -------------------------------------------------------------------------


async def test_signup_mails_a_link_that_verifies_the_address(
    app: Quart, client: Any, inbox: Inbox
) -> None:
    assert (await client.post("/signup", json=SIGNUP)).status_code == 201
    messages = await mails_to(app, inbox, "ann@example.com")
    assert len(messages) == 1
    assert messages[0]["Subject"] == "Verify your email address"
    assert messages[0].get_body(preferencelist=("html",)) is not None
    link = link_in(messages[0])
    assert link.startswith("http://localhost/verify?token=")

    tokens = await (await login(client, SIGNUP["password"])).get_json()
    me = await client.get("/me", headers=bearer(tokens["access_token"]))
    assert (await me.get_json())["email_verified"] is False

    opened = await client.get(path_of(link))
    assert opened.status_code == 200
    assert await opened.get_json() == {"message": "Your email address is verified."}
    me = await client.get("/me", headers=bearer(tokens["access_token"]))
    assert (await me.get_json())["email_verified"] is True


async def test_the_link_is_readable_in_the_raw_mail_even_for_non_ascii_names(
    app: Quart, client: Any, inbox: Inbox
) -> None:
    assert (await client.post("/signup", json={**SIGNUP, "name": "Zoë Ødegård"})).status_code == 201
    link = await only_link(app, inbox, "ann@example.com")
    assert link.encode() in inbox.raw[0]
    assert "Hello Zoë Ødegård," in text_of(inbox.messages[0])


async def test_opening_the_link_in_a_browser_shows_a_page(
    app: Quart, client: Any, inbox: Inbox
) -> None:
    await client.post("/signup", json=SIGNUP)
    link = await only_link(app, inbox, "ann@example.com")
    page = await client.get(path_of(link), headers=BROWSER)
    assert page.status_code == 200
    assert "Your email address is verified." in await page.get_data(as_text=True)
    again = await client.get(path_of(link), headers=BROWSER)
    assert again.status_code == 400
    assert "Invalid or expired token" in await again.get_data(as_text=True)


async def test_the_link_without_a_token_asks_people_and_refuses_api_clients(client: Any) -> None:
    for path in ("/verify", "/verify?token="):
        page = await client.get(path, headers=BROWSER)
        assert page.status_code == 200
        assert 'name="token"' in await page.get_data(as_text=True)
    missing = await client.get("/verify", headers={"Accept": "application/json"})
    assert missing.status_code == 400 and missing.mimetype == "application/json"
    assert await missing.get_json() == {
        "message": "token: This field is required",
        "errors": {"token": "This field is required"},
    }
    for path in ("/verify?token=", "/verify?token=%20%20"):
        empty = await client.get(path)  # no Accept at all, as from a script
        assert empty.status_code == 400 and empty.mimetype == "application/json"
        assert (await empty.get_json())["errors"] == {"token": "Token is missing or malformed"}


async def test_the_link_answers_api_clients_with_json_as_documented(
    app: Quart, client: Any, inbox: Inbox
) -> None:
    document = await (await client.get("/openapi.json")).get_json()
    responses = document["paths"]["/verify"]["get"]["responses"]
    await client.post("/signup", json=SIGNUP)
    token = token_of(await only_link(app, inbox, "ann@example.com"))
    answers = [
        (await client.get("/verify"), 400),
        (await client.get("/verify?token=nonsense", headers={"Accept": "*/*"}), 400),
        (await client.get(f"/verify?token={token}", headers={"Accept": "*/*"}), 200),  # curl
        (await client.get(f"/verify?token={token}", headers={"Accept": "application/json"}), 400),
    ]
    for response, status in answers:
        assert response.status_code == status and response.mimetype == "application/json"
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        validator = jsonschema_rs.validator_for({**schema, "components": document["components"]})
        assert validator.is_valid(await response.get_json()), await response.get_json()
    assert await answers[2][0].get_json() == {"message": "Your email address is verified."}
    assert await answers[3][0].get_json() == INVALID  # the link works once


async def test_post_verify_is_single_use(app: Quart, client: Any, inbox: Inbox) -> None:
    await client.post("/signup", json=SIGNUP)
    token = token_of(await only_link(app, inbox, "ann@example.com"))
    first = await client.post("/verify", json={"token": token})
    assert first.status_code == 200
    again = await client.post("/verify", json={"token": token})
    assert again.status_code == 400
    assert await again.get_json() == INVALID


async def test_verify_request_resends_for_bearer_and_cookie(
    app: Quart, client: Any, inbox: Inbox, signed_in: Any
) -> None:
    response = await client.post("/verify/request", headers=bearer(signed_in.tokens.access_token))
    assert response.status_code == 202
    link = await only_link(app, inbox, "ann@example.com")
    assert (await client.get(path_of(link))).status_code == 200

    other = await make_user(app, name="Bob", email="bob@example.com")
    tokens = await sign_in(app, other)
    browser = app.test_client()
    browser.set_cookie("localhost", "jwt_token", tokens.access_token)
    page = await browser.post("/verify/request", headers=BROWSER)
    assert page.status_code == 302
    assert len(await mails_to(app, inbox, "bob@example.com")) == 1


async def test_verify_request_needs_a_login(client: Any) -> None:
    response = await client.post("/verify/request")
    assert response.status_code == 401


async def test_verify_request_by_email_when_not_signed_in(
    app: Quart, client: Any, inbox: Inbox
) -> None:
    await make_user(app, email="una@example.com")
    known = await client.post("/verify/request", json={"email": "UNA@example.com"})
    unknown = await client.post("/verify/request", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert await known.get_json() == await unknown.get_json()
    link = await only_link(app, inbox, "una@example.com")
    assert (await client.get(path_of(link))).status_code == 200
    assert [message["To"] for message in inbox.messages] == ["una@example.com"]
    page = await client.post("/verify/request", form={"email": "una@example.com"}, headers=BROWSER)
    assert page.status_code == 302 and page.headers["Location"] == "/login"


async def test_bad_credentials_are_not_ignored_by_verify_request(client: Any) -> None:
    response = await client.post(
        "/verify/request", json={"email": "x@example.com"}, headers=bearer("garbage")
    )
    assert response.status_code == 401
    assert await response.get_json() == {"message": "Token is invalid!"}


async def test_verified_accounts_get_no_new_link(app: Quart, client: Any, inbox: Inbox) -> None:
    user = await make_user(app, email="vera@example.com", verified=True)
    tokens = await sign_in(app, user)
    response = await client.post("/verify/request", headers=bearer(tokens.access_token))
    assert response.status_code == 202
    assert "already verified" in (await response.get_json())["message"]
    assert await mails_to(app, inbox, "vera@example.com") == []


async def test_a_changed_email_makes_old_verification_links_stale(
    app: Quart, client: Any, inbox: Inbox
) -> None:
    await client.post("/signup", json=SIGNUP)
    token = token_of(await only_link(app, inbox, "ann@example.com"))
    from quart_auth_app.models import User

    async with db_session(app) as db:
        await db.execute(update(User).values(email="ann.new@example.com"))
        await db.commit()
    response = await client.post("/verify", json={"token": token})
    assert response.status_code == 400


async def test_required_verification_blocks_login_until_verified(
    app_config: dict[str, Any], inbox: Inbox
) -> None:
    async with running_app({**app_config, "REQUIRE_VERIFIED_EMAIL": "true"}) as app:
        client = app.test_client()
        await client.post("/signup", json=SIGNUP)
        refused = await login(client, SIGNUP["password"])
        assert refused.status_code == 403
        assert "verify your email" in (await refused.get_json())["message"]
        first = await only_link(app, inbox, "ann@example.com")
        async with db_session(app) as db:
            await db.execute(update(MailToken).values(expires_at=utcnow()))
            await db.commit()
        assert (await client.get(path_of(first))).status_code == 400
        # Locked out of login, the user asks for a new link by naming the address.
        resent = await client.post("/verify/request", json={"email": "ann@example.com"})
        assert resent.status_code == 202
        link = link_in((await mails_to(app, inbox, "ann@example.com"))[-1])
        assert (await client.get(path_of(link))).status_code == 200
        assert (await login(client, SIGNUP["password"])).status_code == 200


# --- password reset ---------------------------------------------------------------------


async def test_reset_end_to_end(app: Quart, client: Any, inbox: Inbox, signed_in: Any) -> None:
    response = await client.post("/password/forgot", json={"email": "ANN@example.com"})
    assert response.status_code == 202
    messages = await mails_to(app, inbox, "ann@example.com")
    assert len(messages) == 1 and messages[0]["Subject"] == "Reset your password"
    link = link_in(messages[0])
    assert link.startswith("http://localhost/password/reset?token=")
    assert "30 minutes" in text_of(messages[0])

    form = await client.get(path_of(link), headers=BROWSER)
    assert form.status_code == 200
    assert f'value="{token_of(link)}"' in await form.get_data(as_text=True)

    done = await client.post(
        "/password/reset", json={"token": token_of(link), "new_password": NEW_PASSWORD}
    )
    assert done.status_code == 204
    me = await client.get("/me", headers=bearer(signed_in.tokens.access_token))
    assert me.status_code == 401
    refreshed = await client.post(
        "/token/refresh", json={"refresh_token": signed_in.tokens.refresh_token}
    )
    assert refreshed.status_code == 401
    assert (await login(client, DEFAULT_PASSWORD)).status_code == 401
    assert (await login(client, NEW_PASSWORD)).status_code == 200

    reused = await client.post(
        "/password/reset", json={"token": token_of(link), "new_password": "yet another phrase"}
    )
    assert reused.status_code == 400
    assert await reused.get_json() == INVALID


async def test_reset_through_browser_forms(
    app: Quart, client: Any, inbox: Inbox, user: Any
) -> None:
    sent = await client.post("/password/forgot", form={"email": "ann@example.com"}, headers=BROWSER)
    assert sent.status_code == 302
    notice = await client.get(sent.headers["Location"], headers=BROWSER)
    assert "If an account exists for that address" in await notice.get_data(as_text=True)
    token = token_of(await only_link(app, inbox, "ann@example.com"))
    done = await client.post(
        "/password/reset", form={"token": token, "new_password": NEW_PASSWORD}, headers=BROWSER
    )
    assert done.status_code == 302 and done.headers["Location"] == "/login"
    page = await client.get("/login", headers=BROWSER)
    assert "Your password has been changed" in await page.get_data(as_text=True)
    assert (await login(client, NEW_PASSWORD)).status_code == 200


async def test_pages_render(client: Any) -> None:
    for path, marker in (
        ("/password/forgot", "Forgot your password?"),
        ("/verify", "Verify your email address"),
    ):
        page = await client.get(path, headers=BROWSER)
        assert page.status_code == 200
        assert marker in await page.get_data(as_text=True)


async def test_a_bad_reset_link_says_so(client: Any) -> None:
    page = await client.get("/password/reset?token=nonsense", headers=BROWSER)
    assert page.status_code == 400
    body = await page.get_data(as_text=True)
    assert "Invalid or expired token" in body and 'href="/password/forgot"' in body
    api = await client.get("/password/reset?token=nonsense")
    assert api.status_code == 400 and await api.get_json() == INVALID


async def test_unknown_email_gets_the_same_202_and_no_mail(
    app: Quart, client: Any, inbox: Inbox, user: Any
) -> None:
    known = await client.post("/password/forgot", json={"email": "ann@example.com"})
    unknown = await client.post("/password/forgot", json={"email": "nobody@example.com"})
    malformed = await client.post("/password/forgot", json={"email": "not an address"})
    for response in (known, unknown, malformed):
        assert response.status_code == 202
    assert await known.get_json() == await unknown.get_json() == await malformed.get_json()
    await settle(app)
    assert [message["To"] for message in inbox.messages] == ["ann@example.com"]


async def test_forgot_needs_an_email(client: Any) -> None:
    response = await client.post("/password/forgot", json={})
    assert response.status_code == 400
    assert "email" in (await response.get_json())["errors"]


async def test_expired_reset_token_is_refused(
    app: Quart, client: Any, inbox: Inbox, user: Any
) -> None:
    token = token_of(await reset_link(app, client, inbox))
    async with db_session(app) as db:
        await db.execute(update(MailToken).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
        await db.commit()
    response = await client.post(
        "/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 400
    assert await response.get_json() == INVALID


async def test_expired_tokens_are_cleaned_up(
    app: Quart, client: Any, inbox: Inbox, user: Any
) -> None:
    await reset_link(app, client, inbox)
    await reset_link(app, client, inbox)
    async with db_session(app) as db:
        assert await mail_flows.cleanup(db) == 0
        await db.execute(
            update(MailToken)
            .where(MailToken.purpose == "reset")
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )
        await db.commit()
        assert await mail_flows.cleanup(db) == 2
        assert await mail_flows.cleanup(db) == 0


async def test_reset_token_dies_when_the_password_changes(
    app: Quart, client: Any, inbox: Inbox, signed_in: Any
) -> None:
    token = token_of(await reset_link(app, client, inbox))
    changed = await client.post(
        "/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "changed the usual way"},
        headers=bearer(signed_in.tokens.access_token),
    )
    assert changed.status_code == 204
    response = await client.post(
        "/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 400
    assert (await login(client, "changed the usual way")).status_code == 200


async def test_one_reset_kills_the_other_outstanding_links(
    app: Quart, client: Any, inbox: Inbox, user: Any
) -> None:
    first = token_of(await reset_link(app, client, inbox))
    second = token_of(await reset_link(app, client, inbox))
    ok = await client.post("/password/reset", json={"token": first, "new_password": NEW_PASSWORD})
    assert ok.status_code == 204
    late = await client.post(
        "/password/reset", json={"token": second, "new_password": "other one!"}
    )
    assert late.status_code == 400


async def test_tokens_are_single_purpose(app: Quart, client: Any, inbox: Inbox) -> None:
    await client.post("/signup", json=SIGNUP)
    verify_token = token_of(await only_link(app, inbox, "ann@example.com"))
    reset_token = token_of(await reset_link(app, client, inbox))
    wrong = await client.post(
        "/password/reset", json={"token": verify_token, "new_password": NEW_PASSWORD}
    )
    assert wrong.status_code == 400 and await wrong.get_json() == INVALID
    wrong = await client.post("/verify", json={"token": reset_token})
    assert wrong.status_code == 400 and await wrong.get_json() == INVALID
    # A refused attempt uses nothing up: each token still works for its own purpose.
    assert (await client.post("/verify", json={"token": verify_token})).status_code == 200
    done = await client.post(
        "/password/reset", json={"token": reset_token, "new_password": NEW_PASSWORD}
    )
    assert done.status_code == 204


@pytest.mark.parametrize("token", ["forged", "A" * 43, "x" * 300, " ", "é" * 40])
async def test_forged_tokens_are_refused(client: Any, user: Any, token: str) -> None:
    reset = await client.post(
        "/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    verify = await client.post("/verify", json={"token": token})
    assert reset.status_code == verify.status_code == 400


async def test_a_weak_new_password_keeps_the_token(
    app: Quart, client: Any, inbox: Inbox, user: Any
) -> None:
    token = token_of(await reset_link(app, client, inbox))
    weak = await client.post("/password/reset", json={"token": token, "new_password": "short"})
    assert weak.status_code == 400
    assert "new_password" in (await weak.get_json())["errors"]
    ok = await client.post("/password/reset", json={"token": token, "new_password": NEW_PASSWORD})
    assert ok.status_code == 204


async def test_concurrent_resets_with_one_token_succeed_once(
    app: Quart, client: Any, inbox: Inbox, user: Any
) -> None:
    token = token_of(await reset_link(app, client, inbox))
    responses = await asyncio.gather(
        *(
            app.test_client().post(
                "/password/reset", json={"token": token, "new_password": f"{NEW_PASSWORD} {i}"}
            )
            for i in range(4)
        )
    )
    assert sorted(response.status_code for response in responses) == [204, 400, 400, 400]


async def test_mail_to_one_inbox_is_capped(
    app: Quart, client: Any, inbox: Inbox, user: Any
) -> None:
    for _ in range(5):
        response = await client.post("/password/forgot", json={"email": "ann@example.com"})
        assert response.status_code == 202
    assert len(await mails_to(app, inbox, "ann@example.com")) == 3


async def test_forgot_is_throttled_per_client(app_config: dict[str, Any], user: Any) -> None:
    async with running_app({**app_config, "AUTH_ATTEMPTS_PER_MINUTE": "2"}) as app:
        client = app.test_client()
        for _ in range(2):
            assert (
                await client.post("/password/forgot", json={"email": "x@example.com"})
            ).status_code == 202
        throttled = await client.post("/password/forgot", json={"email": "x@example.com"})
        assert throttled.status_code == 429
        assert "Retry-After" in throttled.headers


async def test_links_use_public_url(app_config: dict[str, Any], inbox: Inbox) -> None:
    async with running_app({**app_config, "PUBLIC_URL": "https://auth.example.org/"}) as app:
        await app.test_client().post("/signup", json=SIGNUP)
        link = await only_link(app, inbox, "ann@example.com")
    assert link.startswith("https://auth.example.org/verify?token=")


# --- delivery ----------------------------------------------------------------------------


async def test_smtp_server_down_breaks_nothing(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with running_app({**app_config, "MAIL_URL": f"smtp://127.0.0.1:{free_port()}"}) as app:
        client = app.test_client()
        with caplog.at_level(logging.INFO, logger="quart_auth_app"):
            assert (await client.post("/signup", json=SIGNUP)).status_code == 201
            forgot = await client.post("/password/forgot", json={"email": "ann@example.com"})
            assert forgot.status_code == 202
            await settle(app)
    failures = [r for r in caplog.records if "could not send" in r.getMessage()]
    assert {r.getMessage().split()[4] for r in failures} == {"verify", "reset"}
    assert not any("token=" in record.getMessage() for record in caplog.records)


async def test_a_slow_smtp_server_does_not_slow_the_request(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept and never greet: the client waits for its timeout
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with running_app(
        {**app_config, "MAIL_URL": f"smtp://127.0.0.1:{port}", "MAIL_TIMEOUT": "1"}
    ) as app:
        await make_user(app, email="ann@example.com")
        started = time.perf_counter()
        response = await app.test_client().post(
            "/password/forgot", json={"email": "ann@example.com"}
        )
        elapsed = time.perf_counter() - started
        assert response.status_code == 202 and elapsed < 0.5
        with caplog.at_level(logging.WARNING, logger="quart_auth_app"):
            await settle(app)
    server.close()
    await server.wait_closed()
    assert any("could not send the reset mail" in r.getMessage() for r in caplog.records)


async def test_without_mail_url_the_mail_goes_to_the_log(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Development: no SMTP, no PUBLIC_URL; the link is built from the request's host.
    config = {k: v for k, v in app_config.items() if k not in ("MAIL_URL", "PUBLIC_URL")}
    async with running_app(config) as app:
        client = app.test_client()
        with caplog.at_level(logging.INFO, logger="quart_auth_app"):
            assert (await client.post("/signup", json=SIGNUP)).status_code == 201
            await settle(app)
        logged = "\n".join(record.getMessage() for record in caplog.records)
        link = LINK.findall(logged)[0]
        assert (await client.get(path_of(link))).status_code == 200


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def only_ann(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        b"mailer",
        b"p@ss:word",
    )
    return AuthResult(success=ok)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


@pytest.fixture
async def tls_server(
    request: pytest.FixtureRequest, inbox: Inbox, tls_files: tuple[Path, Path]
) -> AsyncIterator[tuple[str, Controller]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    port = free_port()
    if request.param == "smtps":
        controller = Controller(
            inbox,
            hostname="127.0.0.1",
            port=port,
            ssl_context=context,
            authenticator=only_ann,
            auth_require_tls=False,
        )
    else:
        controller = Controller(
            inbox,
            hostname="127.0.0.1",
            port=port,
            tls_context=context,
            require_starttls=True,
            authenticator=only_ann,
        )
    await asyncio.to_thread(controller.start)
    yield f"{request.param}://mailer:p%40ss%3Aword@127.0.0.1:{port}", controller
    await asyncio.to_thread(controller.stop)


@pytest.mark.parametrize("tls_server", ["smtp+starttls", "smtps"], indirect=True)
async def test_tls_and_login(
    app_config: dict[str, Any], inbox: Inbox, tls_files: tuple[Path, Path], tls_server: Any
) -> None:
    url, _ = tls_server
    async with running_app(
        {**app_config, "MAIL_URL": url, "MAIL_CA_FILE": str(tls_files[0])}
    ) as app:
        await app.test_client().post("/signup", json=SIGNUP)
        assert len(await mails_to(app, inbox, "ann@example.com")) == 1


# --- configuration -----------------------------------------------------------------------


def test_mail_urls_are_parsed() -> None:
    plain = parse_mail_url("smtp://mail.example.org")
    assert (plain.host, plain.port, plain.starttls, plain.implicit_tls) == (
        "mail.example.org",
        25,
        False,
        False,
    )
    starttls = parse_mail_url("smtp+starttls://me%40x.io:s%2Fcret@mail.example.org")
    assert (starttls.port, starttls.starttls, starttls.username, starttls.password) == (
        587,
        True,
        "me@x.io",
        "s/cret",
    )
    assert "s/cret" not in repr(starttls)
    assert parse_mail_url("smtps://mail.example.org:2465").port == 2465


@pytest.mark.parametrize(
    "value", ["http://mail", "smtp://", "smtp://host:port", "mail.example.org"]
)
def test_bad_mail_urls_stop_start_up(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MAIL_URL"):
        load_settings(
            {}, {"MAIL_URL": value, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "k" * 40}
        )
