"""SPEC §7 hashing: argon2id off the event loop, and an unknown email costs what a wrong password does.

Timing is asserted by counting argon2 verifications and comparing their parameters, not by
the wall clock, so the tests are exact and stable on a busy machine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from quart import Quart

from quart_auth_app.testing import DEFAULT_PASSWORD, app_services, db_session, make_user

from ..conftest import BROWSER


@dataclass
class Spy:
    """Records every argon2 verification: the hash it ran against and the thread it ran on."""

    hashes: list[str] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)

    def params(self) -> list[str]:
        # "$argon2id$v=19$m=8192,t=1,p=1$salt$digest" -> "argon2id$v=19$m=8192,t=1,p=1"
        return ["$".join(stored.split("$")[1:4]) for stored in self.hashes]


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    # Parameters other than the fixture default, so "current parameters" is checked for real.
    app_config.update(ARGON2_MEMORY_COST="9216", ARGON2_TIME_COST="2")
    return app_config


@pytest.fixture
def spy(app: Quart, monkeypatch: pytest.MonkeyPatch) -> Spy:
    scheme = app_services(app).hasher._scheme
    real_matches = scheme.matches
    recorded = Spy()

    def matches(secret: str, stored: str) -> bool:
        recorded.hashes.append(stored)
        recorded.threads.append(threading.get_ident())
        return real_matches(secret, stored)

    monkeypatch.setattr(scheme, "matches", matches)
    return recorded


async def login(client: Any, email: str, password: str, **kwargs: Any) -> Any:
    return await client.post("/login", json={"email": email, "password": password}, **kwargs)


async def test_unknown_email_costs_one_verification_like_a_wrong_password(
    app: Quart, client: Any, spy: Spy
) -> None:
    user = await make_user(app, email="ann@example.com")
    wrong = await login(client, "ann@example.com", "not the password")
    unknown = await login(client, "nobody@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert await wrong.get_json() == await unknown.get_json()
    assert len(spy.hashes) == 2
    # The dummy check runs with the very parameters real hashes use.
    assert spy.hashes[0] == user.password
    assert spy.params()[1] == spy.params()[0]
    assert spy.hashes[1].startswith("$argon2id$")


@pytest.mark.parametrize("email", ["not-an-email", "x@", "NOBODY@EXAMPLE.COM", "a" * 300])
async def test_every_unknown_or_odd_email_still_costs_a_verification(
    client: Any, spy: Spy, email: str
) -> None:
    response = await login(client, email, "some password")
    assert response.status_code == 401
    assert await response.get_json() == {"message": "Invalid email or password"}
    assert len(spy.hashes) == 1


async def test_browser_login_costs_the_same_too(app: Quart, client: Any, spy: Spy) -> None:
    await make_user(app, email="ann@example.com")
    for email in ("ann@example.com", "nobody@example.com"):
        form = {"email": email, "password": "not the password"}
        response = await client.post("/login", form=form, headers=BROWSER)
        assert response.status_code == 401
    assert len(spy.hashes) == 2
    assert spy.params()[0] == spy.params()[1]


async def test_dummy_follows_the_configured_parameters(client: Any, spy: Spy) -> None:
    await login(client, "nobody@example.com", "whatever you like")
    assert spy.params() == ["argon2id$v=19$m=9216,t=2,p=1"]


async def test_verification_runs_off_the_event_loop(app: Quart, client: Any, spy: Spy) -> None:
    await make_user(app, email="ann@example.com")
    loop_thread = threading.get_ident()
    await login(client, "ann@example.com", DEFAULT_PASSWORD)
    await login(client, "nobody@example.com", DEFAULT_PASSWORD)
    assert len(spy.threads) == 2
    assert loop_thread not in spy.threads


async def test_new_hashes_are_argon2id_with_current_parameters(app: Quart) -> None:
    user = await make_user(app)
    assert user.password.startswith("$argon2id$v=19$m=9216,t=2,p=1$")
    assert DEFAULT_PASSWORD not in user.password


async def test_stale_parameters_are_upgraded_at_login(app: Quart, client: Any) -> None:
    from passlib.context import CryptContext

    weaker = CryptContext(
        schemes=["argon2"], argon2__type="ID", argon2__memory_cost=8192, argon2__rounds=1
    )
    user = await make_user(app, email="old@example.com")
    async with db_session(app) as db:
        stored = await db.get(type(user), user.id)
        assert stored is not None
        stored.password = weaker.hash(DEFAULT_PASSWORD)
        await db.commit()
    assert (await login(client, "old@example.com", DEFAULT_PASSWORD)).status_code == 200
    async with db_session(app) as db:
        upgraded = await db.get(type(user), user.id)
        assert upgraded is not None
        assert upgraded.password.startswith("$argon2id$v=19$m=9216,t=2,p=1$")
    assert (await login(client, "old@example.com", DEFAULT_PASSWORD)).status_code == 200
