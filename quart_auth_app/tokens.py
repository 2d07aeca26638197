"""Issue and verify JWTs. The only place tokens are made or checked; knows nothing of HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_pem_public_key,
)
from jwt.algorithms import HMACAlgorithm, get_default_algorithms

from .config import ConfigError, Settings

TokenType = Literal["access", "refresh"]
MAX_TOKEN_BYTES = 8192
# Header segments seen on verified tokens; a handful exist (one per key id), and only a
# signature made with one of our keys adds one, so the bound is a formality.
KNOWN_HEADERS_LIMIT = 64
REQUIRED_CLAIMS = ["sub", "public_id", "iat", "nbf", "exp", "jti", "type", "iss", "sid"]


class InvalidToken(Exception):
    """Any reason a token is not acceptable; callers never need to know which."""


@dataclass(frozen=True)
class Claims:
    """The verified claims a request relies on."""

    public_id: str
    session_id: str
    jti: str
    type: TokenType
    issued_at: int
    expires_at: int
    # When the person signed in (kept through refresh) and how (RFC 8176); tokens issued
    # before these claims existed count as a sign-in at the epoch: never fresh.
    auth_time: int = 0
    amr: tuple[str, ...] = ("pwd",)


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed token with the facts the caller stores or returns."""

    token: str
    jti: str
    expires_at: int


def token_digest(token: str) -> bytes:
    """The digest stored in place of a token."""
    return hashlib.sha256(token.encode()).digest()


class KeySet:
    """The signing key and every key that may verify, by key id."""

    def __init__(self, algorithm: str, signing_key: Any, verifying: dict[str, Any], kid: str):
        self.algorithm = algorithm
        self.signing_key = signing_key
        self.verifying = verifying
        self.kid = kid

    @classmethod
    def from_settings(cls, settings: Settings) -> KeySet:
        """Build the key set for the configured algorithm."""
        if settings.jwt_algorithm == "HS256":
            kid = hmac.new(settings.secret_key.encode(), b"kid", "sha256").hexdigest()[:16]
            return cls("HS256", settings.secret_key, {kid: settings.secret_key}, kid)
        assert settings.jwt_private_key_file is not None
        algorithm = settings.jwt_algorithm
        private = _load_key("JWT_PRIVATE_KEY_FILE", settings.jwt_private_key_file, algorithm, True)
        public = private.public_key()
        kid = jwk_thumbprint(algorithm, public)
        verifying: dict[str, Any] = {kid: public}
        for path in settings.jwt_public_key_files:
            extra = _load_key("JWT_PUBLIC_KEY_FILES", path, algorithm, False)
            verifying[jwk_thumbprint(algorithm, extra)] = extra
        return cls(algorithm, private, verifying, kid)

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public keys as a JSON Web Key Set (empty for HMAC)."""
        if self.algorithm == "HS256":
            return {"keys": []}
        return {
            "keys": [public_jwk(self.algorithm, key, kid) for kid, key in self.verifying.items()]
        }


def _load_key(variable: str, path: Path, algorithm: str, private: bool) -> Any:
    """A PEM key fit for the algorithm (the public half unless `private`), else ConfigError."""
    try:
        data = path.read_bytes()
        if b"PRIVATE KEY" in data:
            key: Any = load_pem_private_key(data, password=None)
            key = key if private else key.public_key()
        elif private:
            raise ConfigError(variable, f"{path} holds no PEM private key")
        else:
            key = load_pem_public_key(data)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(variable, f"cannot read a PEM key from {path}: {exc}") from None
    reason = _unfit_key_reason(algorithm, key.public_key() if private else key)
    if reason:
        raise ConfigError(variable, f"{path}: {reason}")
    return key


def _unfit_key_reason(algorithm: str, public: Any) -> str | None:
    """Why a key cannot serve the algorithm (wrong type, weak size or curve), if it cannot."""
    if algorithm == "RS256":
        if not isinstance(public, rsa.RSAPublicKey):
            return "RS256 needs an RSA key"
        return "RSA keys must have at least 2048 bits" if public.key_size < 2048 else None
    if algorithm == "ES256":
        if not isinstance(public, ec.EllipticCurvePublicKey):
            return "ES256 needs an EC key"
        return None if isinstance(public.curve, ec.SECP256R1) else "ES256 needs a P-256 key"
    if not isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA needs an Ed25519 or Ed448 key"
    return None


def public_jwk(algorithm: str, key: Any, kid: str) -> dict[str, Any]:
    """One public key as a JWK with its id."""
    jwk: dict[str, Any] = get_default_algorithms()[algorithm].to_jwk(key, as_dict=True)
    return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}


def jwk_thumbprint(algorithm: str, key: Any) -> str:
    """The RFC 7638 thumbprint of a public key, used as its key id."""
    jwk: dict[str, Any] = get_default_algorithms()[algorithm].to_jwk(key, as_dict=True)
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
    canonical = {name: jwk[name] for name in members[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(canonical, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


class TokenService:
    """Signs and verifies access and refresh tokens with pinned algorithm and issuer."""

    def __init__(self, settings: Settings, keys: KeySet | None = None) -> None:
        self.keys = keys or KeySet.from_settings(settings)
        self.issuer = settings.jwt_issuer
        self.lifetimes: dict[TokenType, int] = {
            "access": settings.jwt_access_token_expires,
            "refresh": settings.jwt_refresh_token_expires,
        }
        self.leeway = settings.jwt_leeway_seconds
        self._jwt = jwt.PyJWT()
        if self.keys.algorithm == "HS256":
            _check_secret(self.keys.signing_key)
        self._known_headers: dict[str, Any] = {}

    def issue(
        self, public_id: str, session_id: str, token_type: TokenType, **extra: Any
    ) -> IssuedToken:
        """Sign a token of one type for a user's session."""
        now = int(time.time())
        jti = secrets.token_urlsafe(24)
        expires_at = now + self.lifetimes[token_type]
        claims = {
            "sub": public_id,
            "public_id": public_id,
            "iat": now,
            "nbf": now,
            "exp": expires_at,
            "jti": jti,
            "type": token_type,
            "iss": self.issuer,
            "sid": session_id,
            **extra,
        }
        token = self._jwt.encode(
            claims,
            self.keys.signing_key,
            algorithm=self.keys.algorithm,
            headers={"kid": self.keys.kid},
        )
        return IssuedToken(token, jti, expires_at)

    def verify(self, token: str, expected: TokenType) -> Claims:
        """Return the claims of a valid token of the expected type, else raise InvalidToken."""
        return typed(claims_of(self.decode(token)), expected)

    def decode(self, token: str) -> dict[str, Any]:
        """Check signature, algorithm, issuer and required claims; every failure is InvalidToken."""
        # Refused before any decoding work; a JWT is base64url and dots, so ASCII only.
        if len(token) > MAX_TOKEN_BYTES or not token.isascii():
            raise InvalidToken("token too large or not ASCII")
        header = token.partition(".")[0]
        known = self._known_headers.get(header)
        try:
            key = known or self._key_named_in(token)
            payload: dict[str, Any] = self._jwt.decode(
                token,
                key,
                algorithms=[self.keys.algorithm],
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken(str(exc)) from exc
        _check_shapes(payload)
        if known is None and len(self._known_headers) < KNOWN_HEADERS_LIMIT:
            self._known_headers[header] = key
        return payload

    def _key_named_in(self, token: str) -> Any:
        """The verifying key the token's header names (its `kid`), else InvalidToken.

        PyJWT decodes the whole token to read the header, and decode() does it again; a
        header segment already seen on a verified token skips this first pass.
        """
        kid = jwt.get_unverified_header(token).get("kid")
        key = self.keys.verifying.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown key id")
        return key


def _check_secret(secret: str) -> None:
    """PyJWT refuses HMAC keys that look asymmetric (a PEM or SSH key): say so at start-up."""
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except jwt.InvalidKeyError as exc:
        raise ConfigError("SECRET_KEY", str(exc)) from None


def _check_shapes(payload: dict[str, Any]) -> None:
    for name in ("sub", "public_id", "jti", "sid"):
        if not isinstance(payload[name], str) or not payload[name]:
            raise InvalidToken(f"claim {name} must be a string")
    if payload["sub"] != payload["public_id"]:
        raise InvalidToken("sub and public_id differ")
    if payload["type"] not in ("access", "refresh"):
        raise InvalidToken("unknown token type")


def typed(claims: Claims, expected: TokenType) -> Claims:
    """The claims of a token of the expected type, else InvalidToken."""
    if claims.type != expected:
        raise InvalidToken("wrong token type")
    return claims


def claims_of(payload: dict[str, Any]) -> Claims:
    """The claims of a payload decode() accepted."""
    return Claims(
        public_id=payload["sub"],
        session_id=payload["sid"],
        jti=payload["jti"],
        type=payload["type"],
        issued_at=int(payload["iat"]),
        expires_at=int(payload["exp"]),
        auth_time=_auth_time(payload.get("auth_time")),
        amr=_amr(payload.get("amr")),
    )


def _auth_time(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _amr(value: Any) -> tuple[str, ...]:
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return tuple(value)
    return ("pwd",)
