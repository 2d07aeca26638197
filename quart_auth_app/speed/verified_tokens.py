"""Access tokens remembered once verified: a token seen again costs a lookup and a clock check.

API clients and browsers send the same access token on every request until it expires, and
PyJWT decodes and checks it in full each time (base64, JSON, HMAC or signature, claims). A
token's signature, algorithm, issuer and claim shapes cannot change for a key set that never
changes in a running process, so only its time window is checked again, and a token outside it
goes through the full decode, which gives PyJWT's own verdict. Revocation is not decided here:
the session store reads the live session on every request, remembered token or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..tokens import Claims, KeySet, TokenService, TokenType, claims_of, typed

# A worker sees as many distinct live access tokens as it has active clients; past the bound
# the oldest is forgotten (and verified in full again if it returns).
REMEMBERED_LIMIT = 4096


class RememberingTokenService(TokenService):
    """TokenService.verify, with verified access tokens' claims kept until their window closes."""

    def __init__(
        self,
        settings: Settings,
        keys: KeySet | None = None,
        *,
        limit: int = REMEMBERED_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings, keys)
        self._limit = limit
        self._clock = clock
        # token -> (its claims, first second it is valid, first second it is not)
        self._verified: dict[str, tuple[Claims, float, float]] = {}

    def verify(self, token: str, expected: TokenType) -> Claims:
        remembered = self._verified.get(token)
        if remembered is not None:
            claims, valid_from, valid_until = remembered
            if valid_from <= self._clock() < valid_until:
                return typed(claims, expected)
            del self._verified[token]
        payload = self.decode(token)
        claims = claims_of(payload)
        if claims.type == "access":  # refresh tokens are used once: not worth keeping
            self._remember(token, claims, payload)
        return typed(claims, expected)

    def _remember(self, token: str, claims: Claims, payload: dict[str, Any]) -> None:
        # The window PyJWT accepts: iat and nbf not after now + leeway, exp after now - leeway.
        valid_from = max(int(payload["iat"]), int(payload["nbf"])) - self.leeway
        valid_until = int(payload["exp"]) + self.leeway
        if len(self._verified) >= self._limit:
            del self._verified[next(iter(self._verified))]  # the oldest remembered
        self._verified[token] = (claims, valid_from, valid_until)

    @property
    def remembered(self) -> int:
        """How many tokens are remembered now."""
        return len(self._verified)
