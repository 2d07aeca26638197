"""SPEC §10: roles on developers' routes, read on every request; deactivated accounts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from quart import Quart
from sqlalchemy import update

from quart_auth_app import create_app, token_required
from quart_auth_app.models import User
from quart_auth_app.recovery import RESET, token_for
from quart_auth_app.roles import grant, revoke, roles_of
from quart_auth_app.testing import DEFAULT_PASSWORD, db_session, make_user, sign_in

from ..conftest import BROWSER, bearer, running_app

INSUFFICIENT = {"message": "Insufficient permissions"}


def add_gated_routes(application: Quart) -> None:
    """Routes a developer adds: one needs a role, one a scope, one both."""

    @application.get("/reports")
    @token_required(roles=["auditor"])
    async def reports(user: User) -> dict[str, str]:
        return {"reports_for": user.public_id}

    @application.get("/export")
    @token_required(scopes=["export"])
    async def export(user: User) -> dict[str, str]:
        return {"export_for": user.public_id}

    @application.get("/audit-export")
    @token_required(roles=["auditor", "billing"], scopes=["export"])
    async def audit_export(user: User) -> dict[str, str]:
        return {"audit_for": user.public_id}


@pytest.fixture
async def app(app_config: dict[str, Any]) -> AsyncIterator[Quart]:
    async with running_app(app_config, add_gated_routes) as application:
        yield application


@contextlib.asynccontextmanager
async def second_worker(app_config: dict[str, Any]) -> AsyncIterator[Quart]:
    """Another app on the same database, as a second worker or instance would be."""
    application = create_app(app_config)
    add_gated_routes(application)
    async with application.test_app():
        yield application


async def set_active(app: Quart, user: User, active: bool) -> None:
    async with db_session(app) as db:
        await db.execute(update(User).where(User.id == user.id).values(is_active=active))
        await db.commit()


async def test_a_role_route_refuses_a_user_without_the_role(app: Quart, user: User) -> None:
    tokens = await sign_in(app, user)
    response = await app.test_client().get("/reports", headers=bearer(tokens.access_token))
    assert response.status_code == 403
    assert await response.get_json() == INSUFFICIENT
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="auditor"'
    )


async def test_a_role_route_admits_a_user_with_the_role(app: Quart) -> None:
    auditor = await make_user(app, roles=["auditor"])
    assert auditor.roles == {"auditor"}
    tokens = await sign_in(app, auditor)
    response = await app.test_client().get("/reports", headers=bearer(tokens.access_token))
    assert response.status_code == 200
    assert await response.get_json() == {"reports_for": auditor.public_id}


async def test_every_listed_role_is_needed(app: Quart) -> None:
    auditor = await make_user(app, roles=["auditor"])
    headers = bearer((await sign_in(app, auditor)).access_token)
    response = await app.test_client().get("/audit-export", headers=headers)
    assert response.status_code == 403
    assert 'scope="billing"' in response.headers["WWW-Authenticate"]
    async with db_session(app) as db:
        await grant(db, auditor.id, "billing")
    assert (await app.test_client().get("/audit-export", headers=headers)).status_code == 200


async def test_a_login_session_may_use_scope_routes(app: Quart, user: User) -> None:
    # Scopes limit personal access tokens; a login session is limited by its roles only.
    tokens = await sign_in(app, user)
    response = await app.test_client().get("/export", headers=bearer(tokens.access_token))
    assert response.status_code == 200


async def test_a_role_change_holds_on_the_next_request_on_another_worker(
    app: Quart, app_config: dict[str, Any]
) -> None:
    auditor = await make_user(app, roles=["auditor"])
    headers = bearer((await sign_in(app, auditor)).access_token)
    async with second_worker(app_config) as other:
        assert (await other.test_client().get("/reports", headers=headers)).status_code == 200
        async with db_session(app) as db:
            assert await revoke(db, auditor.id, "auditor")
        assert (await other.test_client().get("/reports", headers=headers)).status_code == 403
        assert (await app.test_client().get("/reports", headers=headers)).status_code == 403
        async with db_session(other) as db:
            assert await grant(db, auditor.id, "auditor")
        assert (await app.test_client().get("/reports", headers=headers)).status_code == 200


async def test_granting_twice_and_revoking_what_is_not_held_change_nothing(
    app: Quart, user: User
) -> None:
    async with db_session(app) as db:
        assert await grant(db, user.id, "auditor")
        assert not await grant(db, user.id, "auditor")
        assert not await revoke(db, user.id, "billing")
        assert await roles_of(db, user.id) == ["auditor"]
        with pytest.raises(ValueError, match="not a valid role name"):
            await grant(db, user.id, "Not A Role")


async def test_access_tokens_carry_the_roles_at_issue(app: Quart) -> None:
    admin = await make_user(app, roles=["admin", "auditor"])
    tokens = await sign_in(app, admin)
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    assert claims["roles"] == ["admin", "auditor"]
    refresh_claims = jwt.decode(tokens.refresh_token, options={"verify_signature": False})
    assert "roles" not in refresh_claims


async def test_a_login_reads_the_current_roles_into_the_token(app: Quart) -> None:
    await make_user(app, email="rita@example.com", roles=["auditor"])
    response = await app.test_client().post(
        "/login", json={"email": "rita@example.com", "password": DEFAULT_PASSWORD}
    )
    token = (await response.get_json())["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["roles"] == ["auditor"]


async def test_a_browser_without_the_role_sees_a_403_page(app: Quart, user: User) -> None:
    tokens = await sign_in(app, user)
    headers = {**BROWSER, **bearer(tokens.access_token)}
    response = await app.test_client().get("/reports", headers=headers)
    assert response.status_code == 403
    assert "Insufficient permissions" in await response.get_data(as_text=True)


# Deactivation ------------------------------------------------------------------------------


async def test_a_deactivated_users_tokens_stop_at_once_on_every_worker(
    app: Quart, app_config: dict[str, Any], user: User
) -> None:
    tokens = await sign_in(app, user)
    headers = bearer(tokens.access_token)
    async with second_worker(app_config) as other:
        assert (await other.test_client().get("/dashboard", headers=headers)).status_code == 200
        await set_active(app, user, False)
        for worker in (app, other):
            response = await worker.test_client().get("/dashboard", headers=headers)
            assert response.status_code == 401
            assert await response.get_json() == {"message": "Token is invalid!"}
        refreshed = await other.test_client().post(
            "/token/refresh", json={"refresh_token": tokens.refresh_token}
        )
        assert refreshed.status_code == 401


async def test_a_deactivated_login_says_disabled_only_after_the_right_password(
    app: Quart, user: User
) -> None:
    await set_active(app, user, False)
    client = app.test_client()
    wrong = await client.post("/login", json={"email": user.email, "password": "not it at all"})
    assert wrong.status_code == 401
    assert await wrong.get_json() == {"message": "Invalid email or password"}
    right = await client.post("/login", json={"email": user.email, "password": DEFAULT_PASSWORD})
    assert right.status_code == 403
    assert await right.get_json() == {"message": "Account disabled"}
    assert "Set-Cookie" not in right.headers
    await set_active(app, user, True)
    again = await client.post("/login", json={"email": user.email, "password": DEFAULT_PASSWORD})
    assert again.status_code == 200


async def test_a_deactivated_account_gets_no_reset_token(app: Quart, user: User) -> None:
    services = app.extensions["services"]
    async with db_session(app) as db:
        assert await token_for(db, services.throttle, RESET, user.email) is not None
    await set_active(app, user, False)
    async with db_session(app) as db:
        assert await token_for(db, services.throttle, RESET, user.email) is None
