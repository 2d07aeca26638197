"""SPEC §8: application logs never carry a password, a token or a cookie value."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from ..conftest import BROWSER, bearer

PASSWORD = "log hygiene passphrase"
JWT_SHAPE = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


def cookie_values(response: Any) -> list[str]:
    values = []
    for header in response.headers.getlist("Set-Cookie"):
        value = header.split(";", 1)[0].split("=", 1)[1]
        if value:
            values.append(value)
    return values


async def api_cycle(client: Any) -> list[str]:
    """Signup, a failed and a good login, refresh, logout over JSON; returns every secret seen."""
    body = {"name": "Lou", "email": "lou@example.com", "password": PASSWORD}
    assert (await client.post("/signup", json=body)).status_code == 201
    wrong = await client.post(
        "/login", json={"email": "lou@example.com", "password": "wrong " + PASSWORD}
    )
    assert wrong.status_code == 401
    tokens = await (await client.post("/login", json=body)).get_json()
    refreshed = await client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    new = await refreshed.get_json()
    replay = await client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401
    assert (await client.post("/logout", headers=bearer(new["access_token"]))).status_code == 200
    return [
        tokens["access_token"],
        tokens["refresh_token"],
        new["access_token"],
        new["refresh_token"],
    ]


async def browser_cycle(client: Any) -> list[str]:
    """Form login, cookie refresh, logout in a browser; returns every cookie value set."""
    form = {"email": "lou@example.com", "password": PASSWORD}
    login = await client.post("/login", form=form, headers=BROWSER)
    assert login.status_code == 302
    secrets = cookie_values(login)
    refreshed = await client.post("/token/refresh", headers=BROWSER)
    secrets += cookie_values(refreshed)
    assert (await client.get("/dashboard", headers=BROWSER)).status_code == 200
    await client.post("/logout", headers=BROWSER)
    return secrets


async def test_no_secret_reaches_the_logs(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = app.test_client()
    secrets = [PASSWORD, "wrong " + PASSWORD, *await api_cycle(client)]
    secrets += await browser_cycle(app.test_client())
    assert len(secrets) >= 8
    records = caplog.records
    assert records, "expected some log output at DEBUG"
    text = "\n".join(
        f"{record.getMessage()} {record.__dict__} {record.exc_text or ''}" for record in records
    )
    for secret in secrets:
        assert secret not in text
    assert not JWT_SHAPE.search(text)
