"""SPEC §5: forged, tampered and malformed tokens get one 401, by bearer header and by cookie."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from quart import Quart

from quart_auth_app.testing import SignedIn, app_services, make_user, mint_token, sign_in
from quart_auth_app.web.auth import ACCESS_COOKIE, REFRESH_COOKIE

from ..conftest import bearer
from ..unit.test_tokens import b64, forge
from .test_asymmetric_keys import write_key

VIAS = ["bearer", "cookie"]


@pytest.fixture(params=VIAS)
def via(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def dashboard_with(app: Quart, token: str, via: str) -> Any:
    """GET /dashboard presenting the token the chosen way, from a fresh client."""
    client = app.test_client()
    if via == "bearer":
        return await client.get("/dashboard", headers=bearer(token))
    # A raw Cookie header: the test client's jar would warn about the oversized ones.
    return await client.get("/dashboard", headers={"Cookie": f"{ACCESS_COOKIE}={token}"})


async def assert_refused(app: Quart, token: str, via: str) -> None:
    response = await dashboard_with(app, token, via)
    assert response.status_code == 401, token
    assert await response.get_json() == {"message": "Token is invalid!"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


def claims_of(signed_in: SignedIn, **changes: Any) -> dict[str, Any]:
    """The claims of a valid access token for the signed-in session, with changes."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": signed_in.user.public_id,
        "public_id": signed_in.user.public_id,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": b64(b"j" * 16),
        "type": "access",
        "iss": "quart_auth_app",
        "sid": signed_in.tokens.session_id,
    }
    claims.update(changes)
    return claims


def header_of(app: Quart, **changes: Any) -> dict[str, Any]:
    return {"alg": "HS256", "typ": "JWT", "kid": app_services(app).tokens.keys.kid, **changes}


def secret_of(app: Quart) -> str:
    return app_services(app).settings.secret_key


def mint(app: Quart, signed_in: SignedIn, **claims: Any) -> str:
    return mint_token(app, signed_in.user.public_id, signed_in.tokens.session_id, **claims)


async def test_a_well_formed_token_is_accepted(app: Quart, signed_in: SignedIn, via: str) -> None:
    """The control: every refusal below is about the one thing each attack changes."""
    for token in (
        mint(app, signed_in),
        forge(header_of(app), claims_of(signed_in), secret_of(app)),
        signed_in.tokens.access_token,
    ):
        response = await dashboard_with(app, token, via)
        assert response.status_code == 200
        assert await response.get_json() == {"message": "Welcome Ann! You are logged in."}


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_is_refused(app: Quart, signed_in: SignedIn, via: str, alg: str) -> None:
    header = header_of(app, alg=alg)
    unsigned = (
        f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims_of(signed_in)).encode())}"
    )
    real_signature = forge(header_of(app), claims_of(signed_in), secret_of(app)).split(".")[2]
    for token in (f"{unsigned}.", unsigned, f"{unsigned}.{real_signature}"):
        await assert_refused(app, token, via)


async def test_another_algorithm_with_the_same_secret_is_refused(
    app: Quart, signed_in: SignedIn, via: str
) -> None:
    for alg, digest in (("HS512", "sha512"), ("HS384", "sha384")):
        token = forge(header_of(app, alg=alg), claims_of(signed_in), secret_of(app), digest)
        await assert_refused(app, token, via)


@pytest.mark.parametrize(
    "claim", ["sub", "public_id", "iat", "nbf", "exp", "jti", "type", "iss", "sid"]
)
async def test_each_missing_claim_is_refused(
    app: Quart, signed_in: SignedIn, via: str, claim: str
) -> None:
    claims = claims_of(signed_in)
    del claims[claim]
    await assert_refused(app, forge(header_of(app), claims, secret_of(app)), via)


@pytest.mark.parametrize("issuer", ["evil", "quart_auth", "quart_auth_app ", "QUART_AUTH_APP", ""])
async def test_a_wrong_issuer_is_refused(
    app: Quart, signed_in: SignedIn, via: str, issuer: str
) -> None:
    await assert_refused(app, mint(app, signed_in, iss=issuer), via)
    claims = claims_of(signed_in, iss=["quart_auth_app"])
    await assert_refused(app, forge(header_of(app), claims, secret_of(app)), via)


async def test_not_yet_valid_and_expired_tokens_are_refused(
    app: Quart, signed_in: SignedIn, via: str
) -> None:
    now = int(time.time())
    await assert_refused(app, mint(app, signed_in, nbf=now + 60), via)
    await assert_refused(app, mint(app, signed_in, iat=now + 60, nbf=now), via)
    await assert_refused(app, mint(app, signed_in, exp=now - 1), via)
    await assert_refused(app, mint(app, signed_in, exp="tomorrow"), via)


class TestLeeway:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, "JWT_LEEWAY_SECONDS": "30"}

    async def test_leeway_forgives_small_clock_skew_only(
        self, app: Quart, signed_in: SignedIn, via: str
    ) -> None:
        now = int(time.time())
        for fine in (mint(app, signed_in, exp=now - 10), mint(app, signed_in, nbf=now + 10)):
            assert (await dashboard_with(app, fine, via)).status_code == 200
        await assert_refused(app, mint(app, signed_in, exp=now - 45), via)
        await assert_refused(app, mint(app, signed_in, nbf=now + 45), via)


async def test_a_refresh_token_is_not_an_access_token(
    app: Quart, signed_in: SignedIn, via: str
) -> None:
    await assert_refused(app, signed_in.tokens.refresh_token, via)
    await assert_refused(app, mint(app, signed_in, token_type="refresh"), via)
    await assert_refused(app, mint(app, signed_in, type="admin"), via)


async def test_an_access_token_is_not_a_refresh_token(app: Quart, signed_in: SignedIn) -> None:
    access = signed_in.tokens.access_token
    by_json = await app.test_client().post("/token/refresh", json={"refresh_token": access})
    assert by_json.status_code == 401
    assert await by_json.get_json() == {"message": "Token is invalid!"}
    client = app.test_client()
    client.set_cookie("localhost", REFRESH_COOKIE, access)
    assert (await client.post("/token/refresh")).status_code == 401
    still = await app.test_client().post(
        "/token/refresh", json={"refresh_token": signed_in.tokens.refresh_token}
    )
    assert still.status_code == 200, "the failed attempts must not have burnt the family"


def flip_bit(token: str) -> str:
    head, body, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0x01
    return f"{head}.{body}.{b64(bytes(raw))}"


async def test_stripped_flipped_or_transplanted_signatures_are_refused(
    app: Quart, signed_in: SignedIn, via: str
) -> None:
    token = signed_in.tokens.access_token
    head, body, signature = token.split(".")
    other = await make_user(app, name="Bob", email="bob@example.com")
    bobs = (await sign_in(app, other)).access_token
    for forged in (
        f"{head}.{body}.",
        f"{head}.{body}",
        flip_bit(token),
        f"{head}.{bobs.split('.')[1]}.{signature}",
        f"{head}.{body}.{signature}x",
        token + ".",
    ):
        await assert_refused(app, forged, via)


async def test_oversized_tokens_are_refused(app: Quart, signed_in: SignedIn, via: str) -> None:
    near_limit = mint(app, signed_in, padding="x" * 5000)
    assert 5000 < len(near_limit) < 8192
    assert (await dashboard_with(app, near_limit, via)).status_code == 200
    oversized = mint(app, signed_in, padding="x" * 8192)
    assert len(oversized) > 8192
    await assert_refused(app, oversized, via)


@pytest.mark.parametrize(
    "kid", ["unknown", "../../dev/null", "/etc/passwd", "", 1, None, ["x"], {"k": "v"}], ids=repr
)
async def test_kid_tricks_are_refused(app: Quart, signed_in: SignedIn, via: str, kid: Any) -> None:
    token = forge(header_of(app, kid=kid), claims_of(signed_in), secret_of(app))
    await assert_refused(app, token, via)


async def test_a_token_without_kid_is_refused(app: Quart, signed_in: SignedIn, via: str) -> None:
    header = {"alg": "HS256", "typ": "JWT"}
    await assert_refused(app, forge(header, claims_of(signed_in), secret_of(app)), via)


async def test_subject_must_be_the_string_public_id(
    app: Quart, signed_in: SignedIn, via: str
) -> None:
    other = await make_user(app, name="Bob", email="bob@example.com")
    secret = secret_of(app)
    for changes in (
        {"sub": other.public_id},
        {"public_id": other.public_id},
        {"sub": 12345, "public_id": 12345},
        {"sub": [signed_in.user.public_id]},
        {"jti": 12345},
        {"sid": 1},
    ):
        await assert_refused(
            app, forge(header_of(app), claims_of(signed_in, **changes), secret), via
        )


async def test_a_session_of_another_user_is_refused(
    app: Quart, signed_in: SignedIn, via: str
) -> None:
    other = await make_user(app, name="Bob", email="bob@example.com")
    bobs_session = (await sign_in(app, other)).session_id
    await assert_refused(app, mint(app, signed_in, sid=bobs_session), via)
    await assert_refused(app, mint(app, signed_in, sid="no-such-session"), via)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "..", "Bearer", "null", "e30.e30.e30"])
async def test_garbage_is_refused(app: Quart, via: str, garbage: str) -> None:
    response = await dashboard_with(app, garbage, via)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"])
async def test_unusable_authorization_headers_are_invalid(app: Quart, header: str) -> None:
    response = await app.test_client().get("/dashboard", headers={"Authorization": header})
    assert response.status_code == 401
    assert await response.get_json() == {"message": "Token is invalid!"}


async def test_no_token_at_all_is_missing(app: Quart) -> None:
    response = await app.test_client().get("/dashboard")
    assert response.status_code == 401
    assert await response.get_json() == {"message": "Token is missing!"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_hmac_deployment_publishes_no_keys(app: Quart) -> None:
    response = await app.test_client().get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert await response.get_json() == {"keys": []}


class TestKeyConfusion:
    """An RS256 deployment must never take its own public key as an HMAC secret."""

    @pytest.fixture
    def app_config(self, app_config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
        key_file = write_key(tmp_path, "RS256")
        return {**app_config, "JWT_ALGORITHM": "RS256", "JWT_PRIVATE_KEY_FILE": str(key_file)}

    async def test_hs256_signed_with_the_public_key_is_refused(
        self, app: Quart, signed_in: SignedIn, via: str
    ) -> None:
        assert (await dashboard_with(app, signed_in.tokens.access_token, via)).status_code == 200
        keys = app_services(app).tokens.keys
        public = keys.signing_key.public_key()
        public_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        jwk_json = jwt.get_algorithm_by_name("RS256").to_jwk(public)
        for secret in (public_pem, public_pem.strip(), jwk_json.encode(), secret_of(app).encode()):
            header = {"alg": "HS256", "typ": "JWT", "kid": keys.kid}
            await assert_refused(app, forge(header, claims_of(signed_in), secret), via)

    async def test_alg_none_is_refused_on_rs256_too(
        self, app: Quart, signed_in: SignedIn, via: str
    ) -> None:
        keys = app_services(app).tokens.keys
        header = {"alg": "none", "typ": "JWT", "kid": keys.kid}
        unsigned = (
            f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims_of(signed_in)).encode())}."
        )
        await assert_refused(app, unsigned, via)
