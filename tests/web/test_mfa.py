"""Second factor and step-up through the client (SPEC §11): JSON, cookies and browser pages."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import jwt
import pyotp
import pytest
from aiosmtpd.controller import Controller
from quart import Quart
from sqlalchemy import update

from quart_auth_app import sessions
from quart_auth_app.mfa import WRONG_CODE
from quart_auth_app.models import MfaChallenge, utcnow
from quart_auth_app.testing import DEFAULT_PASSWORD, make_user

from ..conftest import BROWSER, bearer, running_app
from ..mail_server import Inbox, with_mail
from .test_mail_flows import mails_to, text_of

EMAIL = "ann@example.com"
LOGIN = {"email": EMAIL, "password": DEFAULT_PASSWORD}
FRESH_REFUSED = 'Bearer error="insufficient_user_authentication", max_age=600'


@pytest.fixture
def app_config(app_config: dict[str, Any], smtp_server: Controller) -> dict[str, Any]:
    return with_mail(app_config, smtp_server)


def claims_of(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


async def login(client: Any) -> Any:
    return await client.post("/login", json=LOGIN)


async def access_token(client: Any) -> str:
    response = await login(client)
    assert response.status_code == 200, await response.get_json()
    token: str = (await response.get_json())["access_token"]
    return token


async def enroll(client: Any, token: str) -> tuple[pyotp.TOTP, list[str]]:
    """Turn TOTP on through the API; the TOTP object and the recovery codes."""
    started = await client.post(
        "/me/mfa/totp", json={"password": DEFAULT_PASSWORD}, headers=bearer(token)
    )
    assert started.status_code == 200
    body = await started.get_json()
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(body["secret"])
    # The previous step's code: the next one the test types (the current step) is then new.
    code = totp.at(time.time() - 30)
    confirmed = await client.post(
        "/me/mfa/totp/confirm", json={"code": code}, headers=bearer(token)
    )
    assert confirmed.status_code == 200, await confirmed.get_json()
    codes: list[str] = (await confirmed.get_json())["recovery_codes"]
    assert len(codes) == 10
    return totp, codes


async def challenge(client: Any) -> str:
    response = await login(client)
    assert response.status_code == 403
    body = await response.get_json()
    assert body["message"] == "Two-factor code required"
    assert body["mfa_required"] is True
    assert body["methods"] == ["totp", "recovery_code"]
    assert "access_token" not in body and not response.headers.getlist("Set-Cookie")
    token: str = body["mfa_token"]
    return token


@pytest.fixture
async def ann(app: Quart) -> Any:
    return await make_user(app, name="Ann", email=EMAIL)


async def test_login_with_totp_needs_the_code_and_a_code_works_once(client: Any, ann: Any) -> None:
    totp, _ = await enroll(client, await access_token(client))
    code = totp.at(time.time())
    done = await client.post(
        "/login/mfa", json={"mfa_token": await challenge(client), "code": code}
    )
    assert done.status_code == 200
    tokens = await done.get_json()
    assert claims_of(tokens["access_token"])["amr"] == ["pwd", "otp"]
    assert (await client.get("/me", headers=bearer(tokens["access_token"]))).status_code == 200
    replay = await client.post(
        "/login/mfa", json={"mfa_token": await challenge(client), "code": code}
    )
    assert replay.status_code == 401
    assert await replay.get_json() == {"message": "Invalid two-factor code"}


async def test_a_wrong_password_does_not_reveal_that_totp_is_on(client: Any, ann: Any) -> None:
    before = await client.post("/login", json={**LOGIN, "password": "wrong password!"})
    await enroll(client, await access_token(client))
    after = await client.post("/login", json={**LOGIN, "password": "wrong password!"})
    assert before.status_code == after.status_code == 401
    assert await before.get_json() == await after.get_json()
    assert before.headers.get("WWW-Authenticate") == after.headers.get("WWW-Authenticate")


async def wrong_codes_then_the_right_one(client: Any, wrong_codes: int) -> Any:
    """Turn TOTP on, answer a login's challenge wrongly `wrong_codes` times, then rightly."""
    totp, _ = await enroll(client, await access_token(client))
    token = await challenge(client)
    for _ in range(wrong_codes):
        wrong = await client.post("/login/mfa", json={"mfa_token": token, "code": "000000"})
        assert wrong.status_code == 401
    return await client.post("/login/mfa", json={"mfa_token": token, "code": totp.now()})


async def test_an_mfa_token_dies_after_five_wrong_codes(client: Any, ann: Any) -> None:
    late = await wrong_codes_then_the_right_one(client, 5)
    assert late.status_code == 401
    assert (await late.get_json())["message"] == "Two-factor sign-in expired. Please log in again."


async def test_wrong_codes_count_as_failed_logins_until_429(app_config: dict[str, Any]) -> None:
    # SPEC §11: throttled as logins are. A stolen password gives no more code guesses than the
    # login throttle allows, and the lock holds for the password step and the right code too.
    async with running_app({**app_config, "LOGIN_FAILURES_PER_WINDOW": "3"}) as application:
        await make_user(application, name="Ann", email=EMAIL)
        client = application.test_client()
        right = await wrong_codes_then_the_right_one(client, 3)
        password = await login(client)
    for locked in (right, password):
        assert locked.status_code == 429
        assert int(locked.headers["Retry-After"]) > 0


async def test_an_mfa_token_expires_after_five_minutes(app: Quart, client: Any, ann: Any) -> None:
    totp, _ = await enroll(client, await access_token(client))
    token = await challenge(client)
    async with app.extensions["services"].db_sessions() as db:
        await db.execute(update(MfaChallenge).values(expires_at=utcnow() - timedelta(seconds=1)))
        await db.commit()
    late = await client.post("/login/mfa", json={"mfa_token": token, "code": totp.now()})
    assert late.status_code == 401
    assert (await late.get_json())["message"] == "Two-factor sign-in expired. Please log in again."


async def test_recovery_codes_sign_in_once_and_mail_the_user(
    app: Quart, client: Any, ann: Any, inbox: Inbox
) -> None:
    _, codes = await enroll(client, await access_token(client))
    body = {"mfa_token": await challenge(client), "recovery_code": codes[0]}
    assert (await client.post("/login/mfa", json=body)).status_code == 200
    again = {"mfa_token": await challenge(client), "recovery_code": codes[0]}
    assert (await client.post("/login/mfa", json=again)).status_code == 401
    mails = await mails_to(app, inbox, EMAIL)
    assert [mail["Subject"] for mail in mails] == ["A recovery code was used to sign in"]
    assert "9 left" in text_of(mails[0])


async def test_regenerated_codes_replace_the_old_set(
    app: Quart, client: Any, ann: Any, inbox: Inbox
) -> None:
    token = await access_token(client)
    totp, old = await enroll(client, token)
    made = await client.post(
        "/me/mfa/recovery-codes", json={"code": totp.now()}, headers=bearer(token)
    )
    assert made.status_code == 200
    new = (await made.get_json())["recovery_codes"]
    assert set(new).isdisjoint(old)
    stale = {"mfa_token": await challenge(client), "recovery_code": old[1]}
    assert (await client.post("/login/mfa", json=stale)).status_code == 401
    fresh = {"mfa_token": await challenge(client), "recovery_code": new[1]}
    assert (await client.post("/login/mfa", json=fresh)).status_code == 200
    subjects = [mail["Subject"] for mail in await mails_to(app, inbox, EMAIL)]
    assert "New recovery codes were made" in subjects


async def test_disabling_needs_password_code_and_a_recent_sign_in(
    app: Quart, client: Any, ann: Any, inbox: Inbox
) -> None:
    token = await access_token(client)
    totp, _ = await enroll(client, token)
    wrong = await client.delete(
        "/me/mfa/totp", json={"password": DEFAULT_PASSWORD, "code": "000000"}, headers=bearer(token)
    )
    assert wrong.status_code == 400
    assert (await wrong.get_json())["errors"] == {"code": WRONG_CODE}
    body = {"password": DEFAULT_PASSWORD, "code": totp.now()}
    assert (
        await client.delete("/me/mfa/totp", json=body, headers=bearer(token))
    ).status_code == 204
    assert (await login(client)).status_code == 200  # no second step any more
    subjects = [mail["Subject"] for mail in await mails_to(app, inbox, EMAIL)]
    assert subjects == ["Two-factor authentication was turned off"]


async def stale_sign_in(client: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Tokens of a sign-in 20 minutes ago (issued now), as a browser that stayed signed in."""
    real = sessions.utcnow
    monkeypatch.setattr(sessions, "utcnow", lambda: real() - timedelta(minutes=20))
    tokens: dict[str, Any] = await (await login(client)).get_json()
    monkeypatch.setattr(sessions, "utcnow", real)
    return tokens


async def test_a_fresh_only_route_refuses_an_old_sign_in_even_after_refresh(
    client: Any, ann: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = await stale_sign_in(client, monkeypatch)
    auth_time = claims_of(tokens["access_token"])["auth_time"]
    assert time.time() - auth_time > 1100
    refreshed = await client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    new = await refreshed.get_json()
    assert claims_of(new["access_token"])["auth_time"] == auth_time  # kept through refresh
    assert claims_of(new["access_token"])["amr"] == ["pwd"]
    refused = await client.delete(
        "/me/mfa/totp",
        json={"password": DEFAULT_PASSWORD, "code": "1"},
        headers=bearer(new["access_token"]),
    )
    assert refused.status_code == 401
    assert await refused.get_json() == {"message": "Recent authentication required"}
    assert refused.headers["WWW-Authenticate"] == FRESH_REFUSED


async def test_reauth_gives_fresh_tokens_for_the_same_session(
    client: Any, ann: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = await stale_sign_in(client, monkeypatch)
    old = claims_of(tokens["access_token"])
    headers = bearer(tokens["access_token"])
    wrong = await client.post("/reauth", json={"password": "not my password"}, headers=headers)
    assert wrong.status_code == 400
    done = await client.post("/reauth", json={"password": DEFAULT_PASSWORD}, headers=headers)
    assert done.status_code == 200
    new = claims_of((await done.get_json())["access_token"])
    assert new["sid"] == old["sid"]
    assert time.time() - new["auth_time"] < 60
    # The fresh token passes the freshness gate (and then meets the route's own checks).
    passed = await client.delete(
        "/me/mfa/totp",
        json={"password": DEFAULT_PASSWORD, "code": "123456"},
        headers=bearer((await done.get_json())["access_token"]),
    )
    assert passed.status_code == 409  # TOTP is not on: the route itself answered
    refreshed = await client.post(
        "/token/refresh", json={"refresh_token": (await done.get_json())["refresh_token"]}
    )
    assert claims_of((await refreshed.get_json())["access_token"])["auth_time"] == new["auth_time"]


async def test_reauth_with_totp_on_needs_the_code(client: Any, ann: Any) -> None:
    token = await access_token(client)
    totp, _ = await enroll(client, token)
    missing = await client.post(
        "/reauth", json={"password": DEFAULT_PASSWORD}, headers=bearer(token)
    )
    assert missing.status_code == 400
    assert "code" in (await missing.get_json())["errors"]
    done = await client.post(
        "/reauth", json={"password": DEFAULT_PASSWORD, "code": totp.now()}, headers=bearer(token)
    )
    assert done.status_code == 200
    assert claims_of((await done.get_json())["access_token"])["amr"] == ["pwd", "otp"]


async def test_browsers_get_the_code_page_then_the_dashboard(client: Any, ann: Any) -> None:
    totp, _ = await enroll(client, await access_token(client))
    page = await client.post("/login", form=LOGIN, headers=BROWSER)
    assert page.status_code == 200
    html = await page.get_data(as_text=True)
    assert 'action="/login/mfa"' in html and "Recovery code" in html
    assert not page.headers.getlist("Set-Cookie")
    token = html.split('name="mfa_token" value="')[1].split('"')[0]
    wrong = await client.post(
        "/login/mfa", form={"mfa_token": token, "code": "000000"}, headers=BROWSER
    )
    assert wrong.status_code == 401
    assert "Invalid two-factor code" in await wrong.get_data(as_text=True)
    assert f'value="{token}"' in await wrong.get_data(as_text=True)  # the page again, same token
    done = await client.post(
        "/login/mfa", form={"mfa_token": token, "code": totp.now()}, headers=BROWSER
    )
    assert done.status_code == 302 and done.headers["Location"] == "/dashboard"
    assert (await client.get("/dashboard", headers=BROWSER)).status_code == 200


async def test_browsers_are_sent_to_confirm_it_is_them_and_back(
    client: Any, ann: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = await stale_sign_in(client, monkeypatch)
    client.set_cookie("localhost", "jwt_token", tokens["access_token"])
    client.set_cookie("localhost", "refresh_token", tokens["refresh_token"])
    refused = await client.post(
        "/account/mfa/disable", form={"password": "x", "code": "1"}, headers=BROWSER
    )
    assert refused.status_code == 302
    assert refused.headers["Location"] == "/reauth?next=%2Faccount"
    page = await client.get("/reauth?next=%2Faccount", headers=BROWSER)
    assert "Confirm it" in await page.get_data(as_text=True)
    done = await client.post(
        "/reauth", form={"password": DEFAULT_PASSWORD, "next": "/account"}, headers=BROWSER
    )
    assert done.status_code == 302 and done.headers["Location"] == "/account"
    evil = await client.post(
        "/reauth", form={"password": DEFAULT_PASSWORD, "next": "//evil.example"}, headers=BROWSER
    )
    assert evil.headers["Location"] == "/account"


async def test_the_setup_page_draws_the_qr_code_inline_within_the_csp(
    client: Any, ann: Any
) -> None:
    await client.post("/login", form=LOGIN, headers=BROWSER)
    page = await client.post(
        "/account/mfa/setup", form={"password": DEFAULT_PASSWORD}, headers=BROWSER
    )
    assert page.status_code == 200
    html = await page.get_data(as_text=True)
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert "style=" not in svg and "<script" not in svg  # nothing CSP would block
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    secret = html.split('id="totp-secret">')[1].split("<")[0]
    confirmed = await client.post(
        "/account/mfa/confirm", form={"code": pyotp.TOTP(secret).now()}, headers=BROWSER
    )
    codes_page = await confirmed.get_data(as_text=True)
    codes = codes_page.split('name="codes" value="')[1].split('"')[0]
    assert len(codes.split()) == 10
    download = await client.post(
        "/account/mfa/recovery-codes/download", form={"codes": codes}, headers=BROWSER
    )
    assert download.status_code == 200
    assert download.headers["Content-Disposition"] == 'attachment; filename="recovery-codes.txt"'
    assert download.mimetype == "text/plain"
    assert codes.split()[0] in await download.get_data(as_text=True)
    forged = await client.post(
        "/account/mfa/recovery-codes/download",
        form={"codes": "aaaa-bbbb-cccc-dddd"},
        headers=BROWSER,
    )
    assert forged.status_code == 400


async def test_a_role_that_requires_mfa_allows_only_enrollment(app_config: dict[str, Any]) -> None:
    async with running_app({**app_config, "MFA_REQUIRED_ROLES": "admin"}) as strict:
        await make_user(strict, name="Ann", email=EMAIL, roles=["admin"])
        client = strict.test_client()
        token = await access_token(client)
        refused = await client.get("/me", headers=bearer(token))
        assert refused.status_code == 403
        assert "Two-factor authentication is required" in (await refused.get_json())["message"]
        await enroll(client, token)
        assert (await client.get("/me", headers=bearer(token))).status_code == 200
