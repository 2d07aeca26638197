"""SPEC §10: the admin API and page: search, read, change, sign out; the last active admin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from quart import Quart
from sqlalchemy import delete, insert, select

from quart_auth_app import create_app
from quart_auth_app.models import User, UserRole
from quart_auth_app.rules import email_key
from quart_auth_app.testing import (
    DEFAULT_PASSWORD,
    BearerClient,
    bearer_client,
    cookie_client,
    db_session,
    make_user,
    sign_in,
)

from ..conftest import BROWSER, bearer, running_app
from ..mail_server import Inbox
from ..servers import free_port
from .test_mail_flows import mails_to

INSUFFICIENT = {"message": "Insufficient permissions"}
LAST_ADMIN = {"message": "The last active admin cannot be demoted or deactivated"}
USER_FIELDS = {
    "public_id",
    "name",
    "email",
    "email_verified",
    "is_active",
    "roles",
    "created_at",
}


@pytest.fixture
async def admin(app: Quart) -> User:
    return await make_user(app, name="Ada Admin", email="ada@example.com", roles=["admin"])


@pytest.fixture
async def as_admin(app: Quart, admin: User) -> BearerClient:
    return await bearer_client(app, admin)


async def add_users(app: Quart, count: int, prefix: str = "bulk") -> None:
    """Insert `count` users in one statement (no password hashing: they never log in)."""
    rows = []
    for number in range(count):
        email = f"{prefix}-{number:03d}-{uuid.uuid4().hex[:6]}@example.com"
        rows.append(
            {
                "public_id": str(uuid.uuid4()),
                "name": f"{prefix.title()} {number:03d}",
                "email": email,
                "email_key": email_key(email),
                "password": "not a hash",
                "email_verified": False,
            }
        )
    async with db_session(app) as db:
        await db.execute(insert(User), rows)
        await db.commit()


async def patch(client: Any, public_id: str, body: dict[str, Any]) -> Any:
    return await client.patch(f"/admin/users/{public_id}", json=body)


async def found(client: Any, query: str) -> list[str]:
    response = await client.get("/admin/users", query_string={"q": query})
    assert response.status_code == 200
    return [person["email"] for person in (await response.get_json())["users"]]


# Who may call ------------------------------------------------------------------------------

ROUTES = [
    ("get", "/admin/users"),
    ("get", "/admin/users/{id}"),
    ("patch", "/admin/users/{id}"),
    ("post", "/admin/users/{id}/logout"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_a_user_without_the_admin_role_gets_403_naming_it(
    app: Quart, user: User, method: str, path: str
) -> None:
    url = path.format(id=user.public_id)
    for client in (await bearer_client(app, user), await cookie_client(app, user)):
        response = await getattr(client, method)(url, json={"name": "Hacked"})
        assert response.status_code == 403
        assert await response.get_json() == INSUFFICIENT
        assert response.headers["WWW-Authenticate"] == (
            'Bearer error="insufficient_scope", scope="admin"'
        )
    anonymous = await getattr(app.test_client(), method)(url, json={"name": "Hacked"})
    assert anonymous.status_code == 401
    async with db_session(app) as db:
        assert (await db.get(User, user.id)).name == "Ann"  # type: ignore[union-attr]


async def test_an_admin_role_taken_away_holds_on_the_next_request(
    app: Quart, admin: User, as_admin: BearerClient
) -> None:
    other = await make_user(app, roles=["admin"])
    assert (await as_admin.get("/admin/users")).status_code == 200
    demoted = await patch(await bearer_client(app, other), admin.public_id, {"roles": []})
    assert demoted.status_code == 200
    assert (await as_admin.get("/admin/users")).status_code == 403


# Search and pagination ---------------------------------------------------------------------


async def test_a_user_is_shown_with_every_field(
    app: Quart, as_admin: BearerClient, admin: User
) -> None:
    response = await as_admin.get(f"/admin/users/{admin.public_id}")
    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == USER_FIELDS
    assert body["roles"] == ["admin"] and body["is_active"] is True
    assert body["email"] == "ada@example.com" and "password" not in body
    listed = await (await as_admin.get("/admin/users")).get_json()
    assert listed == {"users": [body], "next_cursor": None}


async def test_search_matches_name_or_email_ignoring_case(
    app: Quart, as_admin: BearerClient
) -> None:
    await make_user(app, name="Bob Builder", email="bob@example.com")
    await make_user(app, name="Carol", email="Ülrich.Carol@Example.org")
    await make_user(app, name="Dave", email="dave@builders.test")
    assert await found(as_admin, "BUILD") == ["bob@example.com", "dave@builders.test"]
    assert await found(as_admin, "bob builder") == ["bob@example.com"]
    assert await found(as_admin, "ülrich") == ["Ülrich.Carol@Example.org"]
    assert await found(as_admin, "ÜLRICH.CAROL@EXAMPLE") == ["Ülrich.Carol@Example.org"]
    assert await found(as_admin, "nobody") == []


async def test_like_wildcards_in_the_search_are_literal(app: Quart, as_admin: BearerClient) -> None:
    await make_user(app, name="100% Real", email="real@example.com")
    await make_user(app, name="under_score", email="u@example.com")
    await make_user(app, name="Back\\slash", email="b@example.com")
    await make_user(app, name="plain", email="plain@example.com")
    assert await found(as_admin, "%") == ["real@example.com"]
    assert await found(as_admin, "_") == ["u@example.com"]
    assert await found(as_admin, "\\") == ["b@example.com"]
    assert await found(as_admin, "0%") == ["real@example.com"]


async def test_walking_every_page_sees_each_user_once_despite_inserts(
    app: Quart, as_admin: BearerClient
) -> None:
    await add_users(app, 250)
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        query = {"limit": "37", **({"cursor": cursor} if cursor else {})}
        response = await as_admin.get("/admin/users", query_string=query)
        assert response.status_code == 200
        body = await response.get_json()
        assert len(body["users"]) <= 37
        seen += [person["public_id"] for person in body["users"]]
        pages += 1
        if pages == 2:
            await add_users(app, 5, "late")  # created mid-walk: come after every page read
        if body["next_cursor"] is None:
            break
        cursor = body["next_cursor"]
        assert pages < 20
    async with db_session(app) as db:
        everyone = list(await db.scalars(select(User.public_id)))
    assert len(seen) == len(set(seen)) == 256
    assert sorted(seen) == sorted(everyone)
    assert pages == 7  # 256 users, 37 a page


async def test_default_and_largest_page_sizes(app: Quart, as_admin: BearerClient) -> None:
    await add_users(app, 210)
    first = await (await as_admin.get("/admin/users")).get_json()
    assert len(first["users"]) == 50 and first["next_cursor"]
    biggest = await as_admin.get("/admin/users", query_string={"limit": "200"})
    assert len((await biggest.get_json())["users"]) == 200


async def test_a_search_pages_too(app: Quart, as_admin: BearerClient) -> None:
    await add_users(app, 30, "wanted")
    await add_users(app, 30, "other")
    query = {"q": "WANTED", "limit": "20"}
    first = await (await as_admin.get("/admin/users", query_string=query)).get_json()
    second = await (
        await as_admin.get("/admin/users", query_string={**query, "cursor": first["next_cursor"]})
    ).get_json()
    names = [person["name"] for person in first["users"] + second["users"]]
    assert names == [f"Wanted {number:03d}" for number in range(30)]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten", "1.5", ""])
async def test_a_bad_limit_is_400(as_admin: BearerClient, limit: str) -> None:
    response = await as_admin.get("/admin/users", query_string={"limit": limit})
    assert response.status_code == 400
    assert "limit" in (await response.get_json())["errors"]


async def test_a_cursor_not_issued_for_this_search_is_400(
    app: Quart, as_admin: BearerClient
) -> None:
    await add_users(app, 5)
    body = await (await as_admin.get("/admin/users", query_string={"limit": "2"})).get_json()
    cursor: str = body["next_cursor"]
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    for query in (
        {"cursor": "not a cursor"},
        {"cursor": tampered},
        {"cursor": cursor[:-4]},
        {"cursor": "x" * 201},
        {"cursor": cursor, "q": "bulk"},  # issued for another search
    ):
        response = await as_admin.get("/admin/users", query_string={"limit": "2", **query})
        assert response.status_code == 400, query
        assert "cursor" in (await response.get_json())["errors"], query
    good = await as_admin.get("/admin/users", query_string={"limit": "2", "cursor": cursor})
    assert good.status_code == 200


@pytest.mark.parametrize("method", ["get", "patch", "post"])
async def test_an_unknown_user_is_404(as_admin: BearerClient, method: str) -> None:
    path = f"/admin/users/{uuid.uuid4()}" + ("/logout" if method == "post" else "")
    response = await getattr(as_admin, method)(path, json={"name": "Nobody"})
    assert response.status_code == 404
    assert await response.get_json() == {"message": "User not found"}


# Changes -----------------------------------------------------------------------------------


async def test_patch_renames_with_the_name_rules(
    app: Quart, as_admin: BearerClient, user: User
) -> None:
    response = await patch(as_admin, user.public_id, {"name": "  Ann Renamed  "})
    assert response.status_code == 200
    assert (await response.get_json())["name"] == "Ann Renamed"
    for bad in ("", "x" * 101, "bell\x07"):
        refused = await patch(as_admin, user.public_id, {"name": bad})
        assert refused.status_code == 400
        assert "name" in (await refused.get_json())["errors"]
    shown = await (await as_admin.get(f"/admin/users/{user.public_id}")).get_json()
    assert shown["name"] == "Ann Renamed"


async def test_patch_replaces_the_roles_each_name_checked(
    app: Quart, as_admin: BearerClient, user: User
) -> None:
    response = await patch(as_admin, user.public_id, {"roles": ["billing", "auditor", "billing"]})
    assert response.status_code == 200
    assert (await response.get_json())["roles"] == ["auditor", "billing"]
    response = await patch(as_admin, user.public_id, {"roles": ["auditor"]})
    assert (await response.get_json())["roles"] == ["auditor"]
    for bad in (["Admin"], ["two words"], ["x" * 51], [""], "not-a-list-item!", [1]):
        refused = await patch(as_admin, user.public_id, {"roles": bad})
        assert refused.status_code == 400, bad
        assert "roles" in (await refused.get_json())["errors"], bad
    form = await as_admin.patch(f"/admin/users/{user.public_id}", form={"roles": "admin, auditor"})
    assert (await form.get_json())["roles"] == ["admin", "auditor"]
    cleared = await patch(as_admin, user.public_id, {"roles": []})
    assert (await cleared.get_json())["roles"] == []


async def test_patch_needs_a_field(as_admin: BearerClient, user: User) -> None:
    response = await patch(as_admin, user.public_id, {"unknown": 1})
    assert response.status_code == 400
    assert "roles, is_active, name" in (await response.get_json())["message"]
    refused = await patch(as_admin, user.public_id, {"is_active": "perhaps"})
    assert "is_active" in (await refused.get_json())["errors"]


async def test_deactivation_ends_everything_at_once_and_reactivation_brings_nothing_back(
    app: Quart, as_admin: BearerClient, user: User
) -> None:
    tokens = await sign_in(app, user)
    client = app.test_client()
    assert (await client.get("/dashboard", headers=bearer(tokens.access_token))).status_code == 200
    response = await patch(as_admin, user.public_id, {"is_active": False})
    assert response.status_code == 200
    assert (await response.get_json())["is_active"] is False
    denied = await client.get("/me", headers=bearer(tokens.access_token))
    assert denied.status_code == 401
    assert await denied.get_json() == {"message": "Token is invalid!"}
    refreshed = await client.post("/token/refresh", json={"refresh_token": tokens.refresh_token})
    assert refreshed.status_code == 401
    login = await client.post("/login", json={"email": user.email, "password": DEFAULT_PASSWORD})
    assert login.status_code == 403
    assert await login.get_json() == {"message": "Account disabled"}

    assert (await patch(as_admin, user.public_id, {"is_active": True})).status_code == 200
    assert (await client.get("/me", headers=bearer(tokens.access_token))).status_code == 401
    again = await client.post("/token/refresh", json={"refresh_token": tokens.refresh_token})
    assert again.status_code == 401
    login = await client.post("/login", json={"email": user.email, "password": DEFAULT_PASSWORD})
    assert login.status_code == 200


async def test_logout_of_a_user_ends_each_of_their_sessions_only(
    app: Quart, admin: User, as_admin: BearerClient, user: User
) -> None:
    sessions = [await sign_in(app, user, agent) for agent in ("phone", "laptop")]
    client = app.test_client()
    response = await as_admin.post(f"/admin/users/{user.public_id}/logout")
    assert response.status_code == 200
    assert await response.get_json() == {"message": "Every session of the user has ended."}
    for tokens in sessions:
        assert (await client.get("/me", headers=bearer(tokens.access_token))).status_code == 401
        refreshed = await client.post(
            "/token/refresh", json={"refresh_token": tokens.refresh_token}
        )
        assert refreshed.status_code == 401
    assert (await as_admin.get("/admin/users")).status_code == 200  # the admin's own lives on
    login = await client.post("/login", json={"email": user.email, "password": DEFAULT_PASSWORD})
    assert login.status_code == 200  # signed out, not disabled


async def test_a_reset_mail_is_not_sent_to_a_deactivated_account(
    app_config: dict[str, Any],
) -> None:
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    config = {**app_config, "MAIL_URL": f"smtp://127.0.0.1:{smtp.port}"}
    config["PUBLIC_URL"] = "http://localhost"
    try:
        async with running_app(config) as app:
            admin = await make_user(app, roles=["admin"])
            user = await make_user(app, email="gone@example.com")
            client = app.test_client()
            forgot = {"email": "gone@example.com"}
            assert (await client.post("/password/forgot", json=forgot)).status_code == 202
            assert len(await mails_to(app, inbox, "gone@example.com")) == 1
            as_admin = await bearer_client(app, admin)
            assert (await patch(as_admin, user.public_id, {"is_active": False})).status_code == 200
            assert (await client.post("/password/forgot", json=forgot)).status_code == 202
            assert len(await mails_to(app, inbox, "gone@example.com")) == 1
    finally:
        smtp.stop()


# The last active admin ---------------------------------------------------------------------


async def test_the_only_admin_can_neither_demote_nor_deactivate_themselves(
    app: Quart, admin: User, as_admin: BearerClient
) -> None:
    for change in ({"roles": []}, {"roles": ["auditor"]}, {"is_active": False}):
        response = await patch(as_admin, admin.public_id, change)
        assert response.status_code == 409, change
        assert await response.get_json() == LAST_ADMIN
    shown = await (await as_admin.get(f"/admin/users/{admin.public_id}")).get_json()
    assert shown["roles"] == ["admin"] and shown["is_active"] is True
    renamed = await patch(as_admin, admin.public_id, {"name": "Still Ada", "roles": ["admin", "x"]})
    assert renamed.status_code == 200


async def test_a_second_admin_may_go_until_one_is_left(
    app: Quart, admin: User, as_admin: BearerClient
) -> None:
    second = await make_user(app, roles=["admin"])
    third = await make_user(app, roles=["admin"])
    assert (await patch(as_admin, second.public_id, {"is_active": False})).status_code == 200
    assert (await patch(as_admin, third.public_id, {"roles": []})).status_code == 200
    # The deactivated second admin still holds the role but does not count.
    assert (await patch(as_admin, admin.public_id, {"roles": []})).status_code == 409
    assert (await patch(as_admin, second.public_id, {"is_active": True})).status_code == 200
    assert (await patch(as_admin, admin.public_id, {"roles": []})).status_code == 200
    assert (await as_admin.get("/admin/users")).status_code == 403


@contextlib.asynccontextmanager
async def second_worker(app_config: dict[str, Any]) -> AsyncIterator[Quart]:
    """Another app on the same database, as a second worker or instance would be."""
    application = create_app(app_config)
    async with application.test_app():
        yield application


async def test_two_admins_demoting_each_other_at_once_leave_one(
    app: Quart, app_config: dict[str, Any]
) -> None:
    async with second_worker(app_config) as other:
        for round_number in range(3):
            first = await make_user(app, roles=["admin"])
            second = await make_user(app, roles=["admin"])
            one = await bearer_client(app, first)
            two = await bearer_client(other, second)
            answers = await asyncio.gather(
                patch(one, second.public_id, {"roles": []}),
                patch(two, first.public_id, {"is_active": False}),
            )
            codes = sorted(answer.status_code for answer in answers)
            # The loser is refused under the lock (409), or, if the winner committed before
            # the loser's access check, as no longer an admin (403).
            assert codes[0] == 200 and codes[1] in (403, 409), (round_number, codes)
            survivor = first if answers[0].status_code == 200 else second
            async with db_session(app) as db:
                fresh = await db.get(User, survivor.id)
                assert fresh is not None and fresh.is_active and fresh.roles == {"admin"}
                await db.execute(delete(UserRole))  # no admin left over for the next round
                await db.commit()


# The audit log -----------------------------------------------------------------------------


async def test_every_admin_action_is_one_audit_line(
    app: Quart, admin: User, as_admin: BearerClient, user: User, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="quart_auth_app.audit")
    await as_admin.get("/admin/users", query_string={"q": "ann"})
    await as_admin.get(f"/admin/users/{user.public_id}")
    await patch(as_admin, user.public_id, {"roles": ["auditor"], "is_active": False})
    await patch(as_admin, admin.public_id, {"roles": []})  # refused: not recorded as done
    await as_admin.post(f"/admin/users/{user.public_id}/logout")
    lines = [r for r in caplog.records if r.name == "quart_auth_app.audit"]
    actions = [(r.audit["action"], r.audit["target"]) for r in lines]  # type: ignore[attr-defined]
    assert actions == [
        ("search_users", None),
        ("get_user", user.public_id),
        ("update_user", user.public_id),
        ("logout_user", user.public_id),
    ]
    assert all(r.audit["actor"] == admin.public_id for r in lines)  # type: ignore[attr-defined]
    update = lines[2]
    assert update.audit["roles"] == ["auditor"]  # type: ignore[attr-defined]
    assert update.audit["is_active"] is False  # type: ignore[attr-defined]
    text = update.getMessage()
    assert f"actor='{admin.public_id}'" in text and "action='update_user'" in text
    assert f"target='{user.public_id}'" in text
    for record in lines:
        assert DEFAULT_PASSWORD not in record.getMessage()
        assert as_admin.token not in record.getMessage()


# The admin page ----------------------------------------------------------------------------


async def admin_browser(app: Quart, admin: User) -> Any:
    return await cookie_client(app, admin)


async def test_the_admin_page_lists_and_searches_users(app: Quart, admin: User, user: User) -> None:
    client = await admin_browser(app, admin)
    response = await client.get("/admin", headers=BROWSER)
    assert response.status_code == 200
    page = await response.get_data(as_text=True)
    assert "ann@example.com" in page and "ada@example.com" in page
    assert 'href="/admin" aria-current="page"' in page
    assert response.headers["Cache-Control"] == "no-store"
    searched = await client.get("/admin", query_string={"q": "ANN"}, headers=BROWSER)
    text = await searched.get_data(as_text=True)
    assert "ann@example.com" in text and "ada@example.com" not in text


async def test_only_admins_see_the_admin_link_and_page(app: Quart, admin: User, user: User) -> None:
    person = await cookie_client(app, user)
    dashboard = await (await person.get("/dashboard", headers=BROWSER)).get_data(as_text=True)
    assert 'href="/admin"' not in dashboard
    refused = await person.get("/admin", headers=BROWSER)
    assert refused.status_code == 403
    assert "Insufficient permissions" in await refused.get_data(as_text=True)
    boss = await admin_browser(app, admin)
    dashboard = await (await boss.get("/dashboard", headers=BROWSER)).get_data(as_text=True)
    assert 'href="/admin"' in dashboard


async def test_the_page_deactivates_reactivates_and_edits_roles(
    app: Quart, admin: User, user: User
) -> None:
    client = await admin_browser(app, admin)
    tokens = await sign_in(app, user)
    path = f"/admin/users/{user.public_id}"
    off = await client.post(f"{path}/active?q=ann", form={"is_active": "false"}, headers=BROWSER)
    assert off.status_code == 302 and off.headers["Location"] == "/admin?q=ann"
    assert (
        await app.test_client().get("/me", headers=bearer(tokens.access_token))
    ).status_code == 401
    shown = await (await client.get("/admin?q=ann", headers=BROWSER)).get_data(as_text=True)
    assert "deactivated and signed out everywhere" in shown and "Reactivate Ann" in shown
    on = await client.post(f"{path}/active", form={"is_active": "true"}, headers=BROWSER)
    assert on.status_code == 302 and on.headers["Location"] == "/admin"
    roles = await client.post(f"{path}/roles", form={"roles": "auditor, billing"}, headers=BROWSER)
    assert roles.status_code == 302
    body = await (await as_json(app, admin)).get(path)
    assert (await body.get_json())["roles"] == ["auditor", "billing"]
    assert (await body.get_json())["is_active"] is True


async def as_json(app: Quart, admin: User) -> BearerClient:
    return await bearer_client(app, admin)


async def test_the_page_shows_refusals_again_with_the_reason(app: Quart, admin: User) -> None:
    client = await admin_browser(app, admin)
    path = f"/admin/users/{admin.public_id}"
    bad = await client.post(f"{path}/roles", form={"roles": "admin, Not Valid"}, headers=BROWSER)
    assert bad.status_code == 400
    text = await bad.get_data(as_text=True)
    assert "Please check the roles below." in text
    assert "&#39;Not&#39; is not a valid role name" in text
    assert 'value="admin, Not Valid"' in text and 'aria-invalid="true"' in text
    last = await client.post(f"{path}/active", form={"is_active": "false"}, headers=BROWSER)
    assert last.status_code == 409
    assert LAST_ADMIN["message"] in await last.get_data(as_text=True)


async def test_the_page_forms_refuse_cross_site_posts(app: Quart, admin: User, user: User) -> None:
    client = await admin_browser(app, admin)
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        response = await client.post(
            f"/admin/users/{user.public_id}/active",
            form={"is_active": "false"},
            headers={**BROWSER, **headers},
        )
        assert response.status_code == 403
    shown = await (await as_json(app, admin)).get(f"/admin/users/{user.public_id}")
    assert (await shown.get_json())["is_active"] is True


async def test_admin_writes_need_a_recent_sign_in_and_reads_do_not(
    app: Quart, admin: User, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from quart_auth_app import sessions

    real = sessions.utcnow
    monkeypatch.setattr(sessions, "utcnow", lambda: real() - timedelta(minutes=20))
    stale = await sign_in(app, admin)
    monkeypatch.setattr(sessions, "utcnow", real)
    client, headers = app.test_client(), bearer(stale.access_token)
    assert (await client.get("/admin/users", headers=headers)).status_code == 200
    for method, path, body in (
        ("PATCH", f"/admin/users/{user.public_id}", {"name": "Renamed"}),
        ("POST", f"/admin/users/{user.public_id}/logout", None),
    ):
        refused = await client.open(path, method=method, json=body, headers=headers)
        assert refused.status_code == 401, path
        assert await refused.get_json() == {"message": "Recent authentication required"}
        assert refused.headers["WWW-Authenticate"] == (
            'Bearer error="insufficient_user_authentication", max_age=600'
        )
    fresh = bearer((await sign_in(app, admin)).access_token)
    done = await client.patch(
        f"/admin/users/{user.public_id}", json={"name": "Renamed"}, headers=fresh
    )
    assert done.status_code == 200
