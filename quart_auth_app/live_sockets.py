"""Open websockets watched for the end of their session, their token's expiry, or a store outage.

One worker holds many idle sockets; asking the store about each of them every second would be
one query per socket. Instead the watch reads the liveness of every watched session in one
batched statement a second (SessionStore.live_sessions, the same definition of "live" as the
access check), and a revocation pushed through Redis (revocation.RevocationFeed) ends its
sockets at once. The check runs with Redis too: it is what ends a socket whose ending was not
announced (a feed that was down, a row changed by hand) and what notices expired tokens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .faults import describe, is_store_failure
from .sessions import SessionKey, SessionStore

log = logging.getLogger(__name__)

# Close codes (RFC 6455 §7.4.2 leaves 4000-4999 to applications; 4401 mirrors HTTP 401).
SESSION_ENDED = 4401
TRY_AGAIN_LATER = 1013
CHECK_INTERVAL_SECONDS = 1.0
# How long the store may fail before sockets it can no longer vouch for are closed.
STORE_PATIENCE_SECONDS = 5.0

# What ends a socket: a close code and its reason, given to the socket's `end` callback.
Ender = Callable[[int, str], None]


@dataclass(eq=False)
class Watched:
    """One open socket: the session its token names, when the token expires, how to end it."""

    session_id: str
    public_id: str
    expires_at: float
    end: Ender

    @property
    def key(self) -> SessionKey:
        return (self.session_id, self.public_id)


class SocketWatch:
    """The sockets of one worker, ended when their session is no longer live."""

    def __init__(
        self,
        store: SessionStore,
        interval: float = CHECK_INTERVAL_SECONDS,
        patience: float = STORE_PATIENCE_SECONDS,
    ) -> None:
        self.store = store
        self.interval = interval
        self.patience = patience
        self._open: set[Watched] = set()
        self._failing_since: float | None = None

    def __len__(self) -> int:
        return len(self._open)

    def watch(self, session_id: str, public_id: str, expires_at: float, end: Ender) -> Watched:
        """Start watching a socket whose token names this session."""
        watched = Watched(session_id, public_id, expires_at, end)
        self._open.add(watched)
        return watched

    def renew(self, watched: Watched, session_id: str, public_id: str, expires_at: float) -> None:
        """A new token for an open socket: watch the session it names, until it expires."""
        watched.session_id, watched.public_id, watched.expires_at = (
            session_id,
            public_id,
            expires_at,
        )

    def forget(self, watched: Watched) -> None:
        """The socket closed: stop watching it."""
        self._open.discard(watched)

    def revoked(self, session_ids: Iterable[str]) -> None:
        """Sessions announced as revoked: end their sockets now."""
        ended = set(session_ids)
        for watched in [w for w in self._open if w.session_id in ended]:
            self._end(watched, SESSION_ENDED, "Session ended")

    async def run(self) -> None:
        """Check every watched socket once per interval, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:
                # A mistake in the code, not the store: say so, and keep watching.
                log.exception("socket liveness check")

    async def check(self) -> None:
        """End the sockets whose token expired or whose session is no longer live."""
        now = time.time()
        for watched in [w for w in self._open if w.expires_at <= now]:
            self._end(watched, SESSION_ENDED, "Token expired")
        if not self._open:
            return
        watching = list(self._open)
        try:
            live = await self.store.live_sessions({w.key for w in watching})
        except Exception as error:
            if not is_store_failure(error):
                raise
            self._store_failed(error, now)
            return
        self._failing_since = None
        for watched in watching:
            if watched.key not in live and watched in self._open:
                self._end(watched, SESSION_ENDED, "Session ended")

    def _store_failed(self, error: BaseException, now: float) -> None:
        # Revocation fails closed (SPEC §5), but not on the first blip: a thousand sockets
        # closed at once would all reconnect into the same outage.
        if self._failing_since is None:
            self._failing_since = now
            log.warning("socket liveness check failed: %s", describe(error))
        if now - self._failing_since >= self.patience:
            for watched in list(self._open):
                self._end(watched, TRY_AGAIN_LATER, "Service unavailable")

    def _end(self, watched: Watched, code: int, reason: str) -> None:
        self._open.discard(watched)
        watched.end(code, reason)
