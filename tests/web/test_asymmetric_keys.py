"""SPEC §5: RS256, ES256 and EdDSA signing, key rotation with extra public keys, and the JWKS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from quart import Quart

from quart_auth_app import ConfigError, create_app
from quart_auth_app.testing import DEFAULT_PASSWORD, make_user, sign_in

from ..conftest import bearer

ALGORITHMS = ["RS256", "ES256", "EdDSA"]


def private_key(algorithm: str) -> Any:
    """A fresh private key of the kind the algorithm signs with."""
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def write_private(path: Path, key: Any) -> Path:
    """Store a private key as unencrypted PKCS#8 PEM."""
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def write_public(path: Path, key: Any) -> Path:
    """Store the public half of a private key as SubjectPublicKeyInfo PEM."""
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def write_key(directory: Path, algorithm: str, name: str = "signing") -> Path:
    """A new private key for the algorithm, written to `directory/name.pem`."""
    return write_private(directory / f"{name}.pem", private_key(algorithm))


async def login(app: Quart) -> dict[str, Any]:
    """Log Ann in over JSON and return the token response."""
    await make_user(app, name="Ann", email="ann@example.com")
    response = await app.test_client().post(
        "/login", json={"email": "ann@example.com", "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


async def published_keys(app: Quart) -> list[dict[str, Any]]:
    response = await app.test_client().get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys: list[dict[str, Any]] = (await response.get_json())["keys"]
    return keys


def verify_with_jwks(token: str, keys: list[dict[str, Any]], issuer: str) -> dict[str, Any]:
    """What an outside verifier does: pick the published key by `kid`, verify with PyJWT."""
    header = jwt.get_unverified_header(token)
    jwk = next(key for key in keys if key["kid"] == header["kid"])
    claims: dict[str, Any] = jwt.decode(
        token, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]], issuer=issuer
    )
    return claims


@pytest.fixture(params=ALGORITHMS)
def algorithm(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app_config(app_config: dict[str, Any], algorithm: str, tmp_path: Path) -> dict[str, Any]:
    key = private_key(algorithm)
    key_file = write_private(tmp_path / "signing.pem", key)
    write_public(tmp_path / "signing-public.pem", key)  # for the rotation tests
    return {**app_config, "JWT_ALGORITHM": algorithm, "JWT_PRIVATE_KEY_FILE": str(key_file)}


async def test_tokens_are_signed_with_the_configured_algorithm(app: Quart, algorithm: str) -> None:
    body = await login(app)
    for token in (body["access_token"], body["refresh_token"]):
        header = jwt.get_unverified_header(token)
        assert header["alg"] == algorithm
        assert isinstance(header["kid"], str) and header["kid"]
    response = await app.test_client().get("/dashboard", headers=bearer(body["access_token"]))
    assert response.status_code == 200
    refreshed = await app.test_client().post(
        "/token/refresh", json={"refresh_token": body["refresh_token"]}
    )
    assert refreshed.status_code == 200


async def test_jwks_round_trip_with_pyjwt(app: Quart, algorithm: str) -> None:
    body = await login(app)
    keys = await published_keys(app)
    assert len(keys) == 1
    assert keys[0]["alg"] == algorithm and keys[0]["use"] == "sig"
    assert keys[0]["kid"] == jwt.get_unverified_header(body["access_token"])["kid"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(keys[0]), "a private member was published"
    claims = verify_with_jwks(body["access_token"], keys, "quart_auth_app")
    assert claims["type"] == "access" and claims["sub"] == claims["public_id"]


async def test_jwks_is_cacheable(app: Quart) -> None:
    response = await app.test_client().get("/.well-known/jwks.json")
    assert "max-age" in response.headers["Cache-Control"]
    assert response.mimetype == "application/json"


async def test_rotation_keeps_old_tokens_valid_while_the_old_public_key_is_listed(
    app: Quart, app_config: dict[str, Any], algorithm: str, tmp_path: Path
) -> None:
    ann = await make_user(app, name="Ann", email="ann@example.com")
    old_token = (await sign_in(app, ann)).access_token
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    old_public = tmp_path / "signing-public.pem"
    new_key = str(write_key(tmp_path, algorithm, "new"))

    rotated = create_app(
        {**app_config, "JWT_PRIVATE_KEY_FILE": new_key, "JWT_PUBLIC_KEY_FILES": str(old_public)}
    )
    async with rotated.test_app():
        client = rotated.test_client()
        assert (await client.get("/dashboard", headers=bearer(old_token))).status_code == 200
        new_token = (await sign_in(rotated, ann)).access_token
        new_kid = jwt.get_unverified_header(new_token)["kid"]
        assert new_kid != old_kid
        keys = await published_keys(rotated)
        assert {key["kid"] for key in keys} == {old_kid, new_kid}
        assert verify_with_jwks(old_token, keys, "quart_auth_app")["jti"]
        assert verify_with_jwks(new_token, keys, "quart_auth_app")["jti"]

    retired = create_app({**app_config, "JWT_PRIVATE_KEY_FILE": new_key})
    async with retired.test_app():
        client = retired.test_client()
        assert (await client.get("/dashboard", headers=bearer(old_token))).status_code == 401
        assert (await client.get("/dashboard", headers=bearer(new_token))).status_code == 200
        assert [key["kid"] for key in await published_keys(retired)] == [new_kid]


async def test_a_private_key_file_may_serve_as_an_extra_verification_key(
    app: Quart, app_config: dict[str, Any], algorithm: str, tmp_path: Path
) -> None:
    ann = await make_user(app, name="Ann", email="ann@example.com")
    old_token = (await sign_in(app, ann)).access_token
    new_key = str(write_key(tmp_path, algorithm, "new"))
    config = {**app_config, "JWT_PRIVATE_KEY_FILE": new_key}
    rotated = create_app({**config, "JWT_PUBLIC_KEY_FILES": app_config["JWT_PRIVATE_KEY_FILE"]})
    async with rotated.test_app():
        response = await rotated.test_client().get("/dashboard", headers=bearer(old_token))
        assert response.status_code == 200
        assert all("d" not in key for key in await published_keys(rotated))


@pytest.mark.parametrize("algorithm", ["RS256"])
async def test_a_token_of_another_key_pair_is_refused(
    app: Quart, app_config: dict[str, Any], tmp_path: Path
) -> None:
    ann = await make_user(app, name="Ann", email="ann@example.com")
    stranger = create_app(
        {**app_config, "JWT_PRIVATE_KEY_FILE": str(write_key(tmp_path, "RS256", "x"))}
    )
    async with stranger.test_app():
        forged = (await sign_in(stranger, ann)).access_token
    response = await app.test_client().get("/dashboard", headers=bearer(forged))
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("algorithm", "wrong"), [("RS256", "ES256"), ("ES256", "EdDSA"), ("EdDSA", "RS256")]
)
def test_a_key_of_the_wrong_kind_stops_start_up(
    app_config: dict[str, Any], algorithm: str, wrong: str, tmp_path: Path
) -> None:
    mismatched = str(write_key(tmp_path, wrong, "wrong"))
    with pytest.raises(ConfigError) as private_error:
        create_app({**app_config, "JWT_PRIVATE_KEY_FILE": mismatched})
    assert private_error.value.variable == "JWT_PRIVATE_KEY_FILE"
    with pytest.raises(ConfigError) as public_error:
        create_app({**app_config, "JWT_PUBLIC_KEY_FILES": mismatched})
    assert public_error.value.variable == "JWT_PUBLIC_KEY_FILES"


@pytest.mark.parametrize("algorithm", ["RS256"])
def test_weak_or_unreadable_keys_stop_start_up(app_config: dict[str, Any], tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key under test
    p384 = ec.generate_private_key(ec.SECP384R1())
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    public_only = write_public(tmp_path / "public.pem", private_key("RS256"))
    cases = [
        ("RS256", write_private(tmp_path / "weak.pem", weak), "2048"),
        ("ES256", write_private(tmp_path / "p384.pem", p384), "P-256"),
        ("RS256", garbage, "PEM"),
        ("RS256", public_only, "private"),
    ]
    for algorithm, path, reason in cases:
        config = {**app_config, "JWT_ALGORITHM": algorithm, "JWT_PRIVATE_KEY_FILE": str(path)}
        with pytest.raises(ConfigError, match=reason) as error:
            create_app(config)
        assert error.value.variable == "JWT_PRIVATE_KEY_FILE"


@pytest.mark.parametrize("algorithm", ["RS256"])
def test_an_asymmetric_algorithm_needs_a_private_key(
    app_config: dict[str, Any], tmp_path: Path
) -> None:
    config = {key: value for key, value in app_config.items() if key != "JWT_PRIVATE_KEY_FILE"}
    with pytest.raises(ConfigError) as error:
        create_app(config)
    assert error.value.variable == "JWT_PRIVATE_KEY_FILE"
    with pytest.raises(ConfigError) as missing:
        create_app({**app_config, "JWT_PRIVATE_KEY_FILE": str(tmp_path / "absent.pem")})
    assert missing.value.variable == "JWT_PRIVATE_KEY_FILE"
