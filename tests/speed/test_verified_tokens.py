"""Remembered access tokens: accepted again only inside the window PyJWT would accept."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from quart_auth_app.config import Settings, load_settings
from quart_auth_app.speed.verified_tokens import RememberingTokenService
from quart_auth_app.tokens import InvalidToken, TokenService

SECRET = "unit-test-secret-that-is-long-enough-0123456789"


def settings(tmp_path: Path, **overrides: str) -> Settings:
    return load_settings(
        environ={}, overrides={"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": SECRET, **overrides}
    )


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_remembered_token_gives_the_claims_a_full_decode_gives(tmp_path: Path) -> None:
    plain = TokenService(settings(tmp_path))
    remembering = RememberingTokenService(settings(tmp_path))
    token = plain.issue("pid", "sid", "access", roles=["admin"]).token
    first = remembering.verify(token, "access")
    assert remembering.remembered == 1
    assert remembering.verify(token, "access") == first == plain.verify(token, "access")


def test_the_type_is_still_checked_on_a_remembered_token(tmp_path: Path) -> None:
    service = RememberingTokenService(settings(tmp_path))
    token = service.issue("pid", "sid", "access").token
    service.verify(token, "access")
    with pytest.raises(InvalidToken):
        service.verify(token, "refresh")


def test_refresh_tokens_and_refused_tokens_are_not_remembered(tmp_path: Path) -> None:
    service = RememberingTokenService(settings(tmp_path))
    service.verify(service.issue("pid", "sid", "refresh").token, "refresh")
    token = service.issue("pid", "sid", "access").token
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            service.verify(tampered, "access")
    assert service.remembered == 0


def test_an_expired_token_is_refused_though_it_was_remembered(tmp_path: Path) -> None:
    # Real time: past the window the full decode answers, with PyJWT's own clock.
    config = settings(tmp_path, JWT_ACCESS_TOKEN_EXPIRES="1", JWT_LEEWAY_SECONDS="0")
    service = RememberingTokenService(config)
    token = service.issue("pid", "sid", "access").token
    service.verify(token, "access")
    time.sleep(1.1)
    with pytest.raises(InvalidToken):
        service.verify(token, "access")
    assert service.remembered == 0


def counting_decodes(service: TokenService) -> list[str]:
    """The tokens PyJWT is asked to decode from now on."""
    decoded: list[str] = []
    full_decode = service._jwt.decode

    def decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return full_decode(token, *args, **kwargs)

    service._jwt.decode = decode  # type: ignore[method-assign]
    return decoded


def test_the_window_is_the_one_pyjwt_accepts(tmp_path: Path) -> None:
    clock = Clock()
    service = RememberingTokenService(settings(tmp_path, JWT_LEEWAY_SECONDS="10"), clock=clock)
    token = service.issue("pid", "sid", "access").token
    claims = service.verify(token, "access")
    decoded = counting_decodes(service)
    clock.now = claims.expires_at + 10 - 0.001  # PyJWT: expired once exp <= now - leeway
    assert service.verify(token, "access") == claims
    clock.now = claims.issued_at - 10  # PyJWT: not yet valid once iat > now + leeway
    assert service.verify(token, "access") == claims
    assert decoded == []
    for outside in (claims.expires_at + 10, claims.issued_at - 10 - 0.001):
        clock.now = outside  # decoded in full (on the real clock, still valid)
        assert service.verify(token, "access") == claims
    assert decoded == [token, token]


def test_the_memory_is_bounded(tmp_path: Path) -> None:
    service = RememberingTokenService(settings(tmp_path), limit=3)
    tokens = [service.issue(f"pid{i}", "sid", "access").token for i in range(5)]
    for token in tokens:
        service.verify(token, "access")
    assert service.remembered == 3
    assert all(service.verify(token, "access").public_id for token in tokens)
