"""TokenService and KeySet on their own, without HTTP: claims, key ids, size limit, leeway."""

from __future__ import annotations

import base64
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from quart_auth_app.config import ConfigError, Settings, load_settings
from quart_auth_app.tokens import (
    MAX_TOKEN_BYTES,
    REQUIRED_CLAIMS,
    InvalidToken,
    KeySet,
    TokenService,
    token_digest,
)

from ..web.test_asymmetric_keys import write_key

SECRET = "unit-test-secret-that-is-long-enough-0123456789"


def settings(tmp_path: Path, **overrides: str) -> Settings:
    return load_settings(
        environ={}, overrides={"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": SECRET, **overrides}
    )


@pytest.fixture
def service(tmp_path: Path) -> TokenService:
    return TokenService(settings(tmp_path))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(
    header: dict[str, Any], claims: dict[str, Any], secret: str | bytes, digest: str = "sha256"
) -> str:
    """An HMAC-signed JWT built by hand, so any header or claim (even ill-typed) can be tried."""
    key = secret.encode() if isinstance(secret, str) else secret
    signing_input = ".".join(b64(json.dumps(part).encode()) for part in (header, claims))
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def sign(service: TokenService, **changes: Any) -> str:
    """A token signed with the service's own key, with claims changed (None drops one)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "pid",
        "public_id": "pid",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "j" * 22,
        "type": "access",
        "iss": service.issuer,
        "sid": "session",
    }
    claims.update(changes)
    claims = {name: value for name, value in claims.items() if value is not None}
    return forge({"alg": "HS256", "typ": "JWT", "kid": service.keys.kid}, claims, SECRET)


def test_issued_tokens_carry_every_claim_of_the_spec(service: TokenService) -> None:
    issued = service.issue("3f2c-public", "session-1", "access")
    claims = unverified(issued.token)
    assert set(REQUIRED_CLAIMS) <= set(claims)
    assert claims["sub"] == claims["public_id"] == "3f2c-public"
    assert isinstance(claims["sub"], str)
    assert claims["type"] == "access" and claims["iss"] == "quart_auth_app"
    assert claims["sid"] == "session-1" and claims["jti"] == issued.jti
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == 3600 == issued.expires_at - claims["iat"]
    refresh = unverified(service.issue("3f2c-public", "session-1", "refresh").token)
    assert refresh["exp"] - refresh["iat"] == 1_209_600


def test_every_header_names_its_key(service: TokenService) -> None:
    for token_type in ("access", "refresh"):
        header = jwt.get_unverified_header(service.issue("p", "s", token_type).token)
        assert header["alg"] == "HS256"
        assert header["kid"] == service.keys.kid and len(header["kid"]) >= 16


def test_jti_has_at_least_128_random_bits(service: TokenService) -> None:
    jtis = [service.issue("p", "s", "access").jti for _ in range(500)]
    assert len(set(jtis)) == len(jtis)
    for jti in jtis[:20]:
        raw = base64.urlsafe_b64decode(jti + "=" * (-len(jti) % 4))
        assert len(raw) * 8 >= 128


def test_verify_returns_the_claims_of_the_expected_type(service: TokenService) -> None:
    issued = service.issue("pid", "sid-1", "refresh")
    claims = service.verify(issued.token, "refresh")
    assert (claims.public_id, claims.session_id, claims.jti, claims.type) == (
        "pid",
        "sid-1",
        issued.jti,
        "refresh",
    )
    with pytest.raises(InvalidToken):
        service.verify(issued.token, "access")
    with pytest.raises(InvalidToken):
        service.verify(service.issue("pid", "sid-1", "access").token, "refresh")


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_each_required_claim_is_enforced(service: TokenService, claim: str) -> None:
    assert service.verify(sign(service), "access").public_id == "pid"
    with pytest.raises(InvalidToken):
        service.verify(sign(service, **{claim: None}), "access")


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": 42, "public_id": 42},
        {"sub": "other"},
        {"sid": ""},
        {"sid": 7},
        {"jti": 12345},
        {"type": "admin"},
        {"type": ["access"]},
        {"iss": "quart_auth"},
        {"iss": ["quart_auth_app"]},
        {"exp": "never"},
        {"nbf": int(time.time()) + 3600},
        {"iat": int(time.time()) + 3600},
    ],
    ids=repr,
)
def test_malformed_claims_are_refused(service: TokenService, changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken):
        service.verify(sign(service, **changes), "access")


def test_oversized_tokens_are_refused_before_decoding(
    service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = sign(service, padding="x" * MAX_TOKEN_BYTES)
    near = sign(service, padding="x" * 5000)
    assert len(near) < MAX_TOKEN_BYTES < len(big)
    assert service.verify(near, "access").public_id == "pid"

    def must_not_decode(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("an oversized token reached the JWT decoder")

    monkeypatch.setattr(jwt, "get_unverified_header", must_not_decode)
    with pytest.raises(InvalidToken):
        service.verify(big, "access")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "..", "é.é.é", "\ud800", "x" * 9000])
def test_garbage_is_one_invalid_token_error(service: TokenService, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        service.verify(garbage, "access")


def test_leeway_is_applied_and_bounded(tmp_path: Path) -> None:
    lenient = TokenService(settings(tmp_path, JWT_LEEWAY_SECONDS="30"))
    now = int(time.time())
    assert lenient.verify(sign(lenient, exp=now - 10), "access")
    assert lenient.verify(sign(lenient, nbf=now + 10, iat=now + 10), "access")
    with pytest.raises(InvalidToken):
        lenient.verify(sign(lenient, exp=now - 45), "access")
    strict = TokenService(settings(tmp_path))
    with pytest.raises(InvalidToken):
        strict.verify(sign(strict, exp=now - 1), "access")
    with pytest.raises(ConfigError) as error:
        settings(tmp_path, JWT_LEEWAY_SECONDS="31")
    assert error.value.variable == "JWT_LEEWAY_SECONDS"


def test_hmac_key_id_follows_the_secret_without_revealing_it(tmp_path: Path) -> None:
    first = KeySet.from_settings(settings(tmp_path))
    again = KeySet.from_settings(settings(tmp_path))
    other = KeySet.from_settings(
        load_settings(
            environ={},
            overrides={"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": SECRET.upper()},
        )
    )
    assert first.kid == again.kid != other.kid
    assert first.kid not in SECRET
    assert first.jwks() == {"keys": []}


def test_a_token_of_another_secret_is_refused(tmp_path: Path) -> None:
    ours = TokenService(settings(tmp_path))
    theirs = TokenService(
        load_settings(
            environ={}, overrides={"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": SECRET[::-1]}
        )
    )
    token = theirs.issue("pid", "sid", "access").token
    forged = jwt.encode(
        unverified(token),
        theirs.keys.signing_key,
        algorithm="HS256",
        headers={"kid": ours.keys.kid},
    )
    for candidate in (token, forged):
        with pytest.raises(InvalidToken):
            ours.verify(candidate, "access")


def test_a_public_key_as_hmac_secret_is_refused_at_start(tmp_path: Path) -> None:
    # Anyone holding a public key could sign with it: PyJWT's key-confusion check, made when
    # the service starts rather than at the first login.
    private = load_pem_private_key(write_key(tmp_path, "RS256").read_bytes(), password=None)
    public_pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        TokenService(settings(tmp_path, SECRET_KEY=public_pem.decode()))


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_asymmetric_key_ids_are_jwk_thumbprints(tmp_path: Path, algorithm: str) -> None:
    key_file = str(write_key(tmp_path, algorithm))
    keys = KeySet.from_settings(
        settings(tmp_path, JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY_FILE=key_file)
    )
    again = KeySet.from_settings(
        settings(tmp_path, JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY_FILE=key_file)
    )
    assert keys.kid == again.kid and len(keys.kid) == 43  # base64url SHA-256, RFC 7638
    (jwk,) = keys.jwks()["keys"]
    assert jwk["kid"] == keys.kid and jwk["alg"] == algorithm
    service = TokenService(
        settings(tmp_path, JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY_FILE=key_file)
    )
    token = service.issue("pid", "sid", "access").token
    assert jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[algorithm], issuer=service.issuer)


def test_only_a_digest_of_a_token_is_kept() -> None:
    digest = token_digest("header.payload.signature")
    assert len(digest) == 32 and b"payload" not in digest
    assert digest == token_digest("header.payload.signature") != token_digest("header.payload.x")


def test_a_header_seen_before_still_gets_every_check(service: TokenService) -> None:
    good = service.issue("pid", "sid", "access").token
    service.verify(good, "access")  # its header segment is now known
    header, payload, signature = good.split(".")

    def signed(claims: dict[str, Any], secret: str) -> str:
        """A token with the very header segment of `good`, claims and key of our choosing."""
        signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
        digest = hmac.new(secret.encode(), signing_input.encode(), "sha256").digest()
        return f"{signing_input}.{b64(digest)}"

    claims = unverified(good)
    now = int(time.time())
    refused = [
        f"{header}.{b64(json.dumps({**claims, 'sub': 'x', 'public_id': 'x'}).encode())}.{signature}",
        f"{header}.{payload}.{signature[:-4]}AAAA",
        signed(claims, SECRET[::-1]),
        signed({**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, SECRET),
        signed({**claims, "iss": "someone-else"}, SECRET),
    ]
    for token in refused:
        with pytest.raises(InvalidToken):
            service.verify(token, "access")
    assert service.verify(signed(claims, SECRET), "access").public_id == "pid"
