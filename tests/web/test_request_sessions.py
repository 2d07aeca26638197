"""Every request gives its database connection back, whatever it did with its session."""

from __future__ import annotations

from typing import Any

from quart import Quart

from quart_auth_app.speed.postgres_store import PostgresStore
from quart_auth_app.testing import DEFAULT_PASSWORD, app_services, make_user, sign_in

from ..conftest import bearer


def connections_in_use(app: Quart) -> int:
    """Pooled connections checked out by requests (not the one the PostgreSQL reader keeps)."""
    services = app_services(app)
    checked_out: int = services.engine.pool.checkedout()  # type: ignore[attr-defined]
    store = services.store
    kept = isinstance(store, PostgresStore) and store.reader.holds_connection
    return checked_out - int(kept)


async def test_no_request_keeps_a_connection(app: Quart, client: Any) -> None:
    user = await make_user(app, name="Ann", email="ann@example.com")
    tokens = await sign_in(app, user)
    auth = bearer(tokens.access_token)
    requests = [
        client.post("/login", json={"email": "ann@example.com", "password": DEFAULT_PASSWORD}),
        client.post("/login", json={"email": "ann@example.com", "password": "wrong password"}),
        client.post("/token/refresh", json={"refresh_token": tokens.refresh_token}),
        client.post("/token/refresh", json={"refresh_token": tokens.refresh_token}),  # replay
        client.get("/me/sessions", headers=auth),  # a read whose transaction is never committed
        client.patch("/me", json={"name": "Ann B"}, headers=auth),
        client.post(
            "/signup", json={"name": "X", "email": "ann@example.com", "password": "another pass 1"}
        ),  # duplicate: the insert fails and is rolled back
        client.get("/dashboard", headers=auth),
    ]
    statuses = []
    for request in requests:
        statuses.append((await request).status_code)
        assert connections_in_use(app) == 0, statuses
    assert statuses == [200, 401, 200, 401, 200, 200, 400, 200]
