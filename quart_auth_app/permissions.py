"""Who may call a route: the roles and scopes it needs against the caller's (SPEC §10).

A login session (a JWT from /login) may do everything its user's roles allow: it is held to
roles only. A personal access token is held to its scopes as well, and never passes a route
that demands a login session (`session_only`: the password, the account's deletion, the
tokens themselves, logout), whatever scopes it carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InsufficientPermissions, SessionRequired

ADMIN = "admin"
# The scopes the built-in routes need; a developer may name more on routes of their own.
BUILT_IN_SCOPES = ("profile:read", "profile:write", "sessions", "admin")
# A role or scope name: short, lower case, no space (User.role_names joins them by one).
NAME = re.compile(r"[a-z][a-z0-9_.:-]{0,49}")


def checked_names(names: Iterable[str], kind: str) -> frozenset[str]:
    """The names as a set, else ValueError naming the first that is not a valid role or scope."""
    chosen = frozenset(names)
    for name in sorted(chosen):
        if not NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a valid {kind} name (a-z first, then a-z 0-9 _ . : -)"
            )
    return chosen


@dataclass(frozen=True)
class Needs:
    """What one route asks of its caller: every role and every scope listed, and perhaps a
    login session."""

    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    session_only: bool = False

    @classmethod
    def of(
        cls, roles: Iterable[str] = (), scopes: Iterable[str] = (), session_only: bool = False
    ) -> Needs:
        """Needs from a route's declaration; a bad name fails when the route is declared."""
        return cls(checked_names(roles, "role"), checked_names(scopes, "scope"), session_only)

    def missing(self, roles: frozenset[str], scopes: frozenset[str] | None) -> tuple[str, ...]:
        """What the caller lacks: scopes first (what a client can ask for), else roles."""
        lacking = set() if scopes is None else self.scopes - scopes
        return tuple(sorted(lacking or self.roles - roles))

    def check(self, roles: frozenset[str], scopes: frozenset[str] | None) -> None:
        """Raise InsufficientPermissions unless the caller has everything this route needs.

        `scopes` is None for a login session and a token's scopes for a personal access token.
        """
        if self.session_only and scopes is not None:
            raise SessionRequired()
        if missing := self.missing(roles, scopes):
            raise InsufficientPermissions(missing)
