"""SPEC §10: what a route needs (roles, scopes) against what its caller has."""

from __future__ import annotations

import pytest

from quart_auth_app.errors import InsufficientPermissions, SessionRequired
from quart_auth_app.permissions import Needs


def test_a_login_session_is_held_to_roles_only() -> None:
    needs = Needs.of(roles=["admin"], scopes=["admin"])
    assert needs.missing(frozenset({"admin"}), None) == ()
    assert needs.missing(frozenset(), None) == ("admin",)


def test_a_token_with_scopes_needs_every_scope_the_route_names() -> None:
    needs = Needs.of(scopes=["profile:read", "export"])
    assert needs.missing(frozenset(), frozenset({"profile:read", "export", "sessions"})) == ()
    assert needs.missing(frozenset(), frozenset({"profile:read"})) == ("export",)
    assert needs.missing(frozenset(), frozenset()) == ("export", "profile:read")


def test_missing_scopes_are_named_before_missing_roles() -> None:
    needs = Needs.of(roles=["auditor"], scopes=["reports"])
    assert needs.missing(frozenset(), frozenset()) == ("reports",)
    assert needs.missing(frozenset(), frozenset({"reports"})) == ("auditor",)


def test_every_role_listed_is_needed() -> None:
    needs = Needs.of(roles=["auditor", "billing"])
    assert needs.missing(frozenset({"auditor"}), None) == ("billing",)
    with pytest.raises(InsufficientPermissions) as refused:
        needs.check(frozenset({"billing"}), None)
    assert refused.value.needed == ("auditor",)
    needs.check(frozenset({"auditor", "billing", "other"}), None)


@pytest.mark.parametrize("bad", ["Admin", "two words", "", "9lives", "x" * 51, "a,b"])
def test_a_bad_name_fails_when_the_route_is_declared(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid role name"):
        Needs.of(roles=[bad])
    with pytest.raises(ValueError, match="not a valid scope name"):
        Needs.of(scopes=[bad])


def test_a_session_only_route_refuses_any_token_and_admits_a_session() -> None:
    needs = Needs.of(session_only=True)
    needs.check(frozenset(), None)  # a login session
    for scopes in (frozenset(), frozenset({"profile:read", "admin"})):
        with pytest.raises(SessionRequired):
            needs.check(frozenset({"admin"}), scopes)
