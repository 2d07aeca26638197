"""URL matching that leaves nothing behind for the cyclic garbage collector.

Werkzeug's ``StateMachineMatcher.match`` defines a recursive closure on every call; the
closure refers to itself, so each request left ~9 objects (a function, its cells, a set)
that only the cyclic collector frees. That garbage alone drove a collection every ~80
requests, and at 256 connections the collections also walked and promoted the live objects
of every request in flight (bench/: 7 % of the worker's CPU and its longest pauses).
Remembering which rule answered a path of a rule without variables skips the matcher on
every hot route and its garbage with it.

Private names relied on (tests/speed/test_routing.py fails when they change): werkzeug's
`Map._matcher` and `StateMachineMatcher` (werkzeug.routing.matcher).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from quart import Quart
from quart.routing import QuartMap
from werkzeug.routing import Rule
from werkzeug.routing.matcher import StateMachineMatcher

# Rules without variables are finite, so this bound is never reached in practice; it only
# makes the cache's size obviously bounded.
STATIC_MATCHES_KEPT = 1024

MatchKey = tuple[str, str, str, bool]


class StaticRouteMatcher(StateMachineMatcher):
    """Werkzeug's matcher, remembering the rule that answered each path without variables."""

    def __init__(self, merge_slashes: bool) -> None:
        super().__init__(merge_slashes)
        self._static_matches: dict[MatchKey, Rule] = {}

    def add(self, rule: Rule) -> None:
        self._static_matches.clear()
        super().add(rule)

    def update(self) -> None:
        self._static_matches.clear()
        super().update()

    def match(
        self, domain: str, path: str, method: str, websocket: bool
    ) -> tuple[Rule, MutableMapping[str, Any]]:
        key = (domain, path, method, websocket)
        rule = self._static_matches.get(key)
        if rule is not None:
            return rule, {}
        # Misses, 404s, 405s and redirects all go through werkzeug unchanged.
        rule, values = super().match(domain, path, method, websocket)
        if not rule.arguments and len(self._static_matches) < STATIC_MATCHES_KEPT:
            self._static_matches[key] = rule
        return rule, values


class StaticRouteMap(QuartMap):
    """Quart's URL map with :class:`StaticRouteMatcher` in place of werkzeug's matcher."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._matcher = StaticRouteMatcher(self._matcher.merge_slashes)


class StaticRouteApp(Quart):
    """Quart on :class:`StaticRouteMap`."""

    url_map_class = StaticRouteMap
