"""Settings: defaults < environment < explicit mapping, validated once at start-up."""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from cryptography.fernet import Fernet

from .allowed_hosts import HostPattern, parse_pattern

log = logging.getLogger(__name__)

MIN_SECRET_BYTES = 32
MAX_LEEWAY_SECONDS = 30
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256", "EdDSA")
ALGORITHMS = ("HS256", *ASYMMETRIC_ALGORITHMS)
DEFAULT_DATABASE_TIMEOUT = 5

CookieSecure = Literal["true", "false", "auto"]


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    """Every setting the application reads, typed and validated."""

    instance_path: Path
    secret_key: str = field(repr=False)
    database_url: str
    redis_url: str | None = None
    redis_key_prefix: str = "qaa"
    jwt_issuer: str = "quart_auth_app"
    jwt_algorithm: str = "HS256"
    jwt_private_key_file: Path | None = None
    jwt_public_key_files: tuple[Path, ...] = ()
    jwt_access_token_expires: int = 3600
    jwt_refresh_token_expires: int = 1_209_600
    jwt_refresh_grace_seconds: int = 10
    jwt_leeway_seconds: int = 0
    # A sign-in older than this is not fresh enough for `token_required(fresh=True)` routes.
    jwt_fresh_seconds: int = 600
    # Fernet keys for TOTP secrets at rest, the first encrypts; empty: derived from SECRET_KEY.
    mfa_encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    # Users with any of these roles must set up a second factor before using their account.
    mfa_required_roles: tuple[str, ...] = ()
    cookie_secure: CookieSecure = "auto"
    argon2_memory_cost: int = 19_456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    hash_workers: int = 0
    rate_limit_enabled: bool = True
    login_failures_per_window: int = 10
    login_failure_window_seconds: int = 900
    auth_attempts_per_minute: int = 100
    trusted_proxies: int = 0
    require_verified_email: bool = False
    mail_url: str | None = field(default=None, repr=False)
    mail_from: str = "quart_auth_app <no-reply@localhost>"
    mail_timeout: int = 10
    mail_ca_file: Path | None = None
    # The outbox's sender (outbox.py): SMTP connections at once per worker, tries per mail, and
    # the first retry's delay in seconds (doubling after each failure, capped at an hour).
    mail_concurrency: int = 4
    mail_max_attempts: int = 8
    mail_retry_seconds: int = 30
    public_url: str | None = None
    allowed_hosts: tuple[HostPattern, ...] = ()
    database_pool_size: int = 10
    # Seconds a request waits for the database (connect, pool, statement, SQLite's lock) before 503.
    database_timeout: int = DEFAULT_DATABASE_TIMEOUT
    database_statement_cache_size: int = 100
    max_body_bytes: int = 65_536
    # Websockets (README "WebSockets"): the largest message a client may send, and how many a second.
    ws_max_message_bytes: int = 16_384
    ws_messages_per_second: int = 20
    # speed/'s accelerations; false runs the plain core (same behaviour, slower).
    accelerations: bool = True


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"expected true or false, got {raw!r}")


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(name, f"expected a whole number, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(name, f"must be {bound}, got {value}")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip()
        if value not in allowed:
            raise ConfigError(name, f"must be one of {', '.join(allowed)}, got {raw!r}")
        return value

    return parse


def _cookie_secure(name: str, raw: str) -> str:
    return _choice("true", "false", "auto")(name, raw.strip().lower())


def _text(name: str, raw: str) -> str:
    if not raw.strip():
        raise ConfigError(name, "must not be empty")
    return raw.strip()


def _optional_text(name: str, raw: str) -> str | None:
    return raw.strip() or None


def _file(name: str, raw: str) -> Path:
    path = Path(raw.strip()).expanduser()
    if not path.is_file():
        raise ConfigError(name, f"no readable file at {raw!r}")
    return path


def _files(name: str, raw: str) -> tuple[Path, ...]:
    return tuple(_file(name, part) for part in raw.split(",") if part.strip())


# Schemes taken as the one supported driver of their backend: the app is tuned for asyncpg and
# aiosqlite, and a plain `postgresql://` (or Heroku's `postgres://`) means PostgreSQL, whatever
# driver SQLAlchemy would pick for it by default.
DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def _database_url(name: str, raw: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw.strip())
    except ArgumentError:
        raise ConfigError(name, f"not a database URL: {raw!r}") from None
    driver = DRIVERS.get(url.drivername)
    if driver is None:
        raise ConfigError(
            name,
            "only sqlite+aiosqlite:// and postgresql+asyncpg:// (or postgresql://) are supported,"
            f" got {url.drivername}://",
        )
    url = url.set(drivername=driver)
    if driver == "postgresql+asyncpg" and importlib.util.find_spec("asyncpg") is None:
        raise ConfigError(name, "PostgreSQL needs asyncpg: pip install 'quart_auth_app[postgres]'")
    if driver == "sqlite+aiosqlite":
        _sqlite_folder_exists(name, url.database)
    return url.render_as_string(hide_password=False)


def _sqlite_folder_exists(name: str, database: str | None) -> None:
    """An SQLite file named in DATABASE_URL must be in an existing folder.

    SQLite creates a missing file, and the migration lock its missing folders: a typo in the
    path would start on a new, empty database and the users would seem gone. The file itself
    may be new (first start); the folder must be there.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).parent.absolute()
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(name, f"folder {folder} {problem}")


def _redis_url(name: str, raw: str) -> str | None:
    value = raw.strip()
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(name, f"expected a redis:// or rediss:// URL, got {raw!r}")
    return value or None


def _mail_url(name: str, raw: str) -> str | None:
    value = raw.strip()
    if value and not value.startswith(("smtp://", "smtp+starttls://", "smtps://")):
        raise ConfigError(name, "expected smtp://, smtp+starttls:// or smtps://")
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ConfigError(name, "malformed URL (check the port)") from None
    if value and not parts.hostname:
        raise ConfigError(name, "the URL names no host")
    return value or None


def _public_url(name: str, raw: str) -> str | None:
    value = raw.strip().rstrip("/")
    if value and not value.startswith(("http://", "https://")):
        raise ConfigError(name, f"expected an http:// or https:// URL, got {raw!r}")
    return value or None


def _fernet_keys(name: str, raw: str) -> tuple[str, ...]:
    keys = tuple(part.strip() for part in raw.split(",") if part.strip())
    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            raise ConfigError(
                name, "expected Fernet keys (32 url-safe base64 bytes each), comma-separated"
            ) from None
    return keys


def _names(name: str, raw: str) -> tuple[str, ...]:
    return tuple(sorted({part.strip() for part in raw.split(",") if part.strip()}))


def _allowed_hosts(name: str, raw: str) -> tuple[HostPattern, ...]:
    entries = [part for part in raw.split(",") if part.strip()]
    if raw.strip() and not entries:
        raise ConfigError(name, "lists no host")
    try:
        return tuple(parse_pattern(entry) for entry in entries)
    except ValueError as exc:
        raise ConfigError(name, str(exc)) from None


# Environment variable -> (field name, parser). SECRET_KEY and the instance folder are special.
PARSERS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "DATABASE_URL": ("database_url", _database_url),
    "REDIS_URL": ("redis_url", _redis_url),
    "REDIS_KEY_PREFIX": ("redis_key_prefix", _text),
    "JWT_ISSUER": ("jwt_issuer", _text),
    "JWT_ALGORITHM": ("jwt_algorithm", _choice(*ALGORITHMS)),
    "JWT_PRIVATE_KEY_FILE": ("jwt_private_key_file", _file),
    "JWT_PUBLIC_KEY_FILES": ("jwt_public_key_files", _files),
    "JWT_ACCESS_TOKEN_EXPIRES": ("jwt_access_token_expires", _integer(1)),
    "JWT_REFRESH_TOKEN_EXPIRES": ("jwt_refresh_token_expires", _integer(1)),
    "JWT_REFRESH_GRACE_SECONDS": ("jwt_refresh_grace_seconds", _integer(0, 300)),
    "JWT_LEEWAY_SECONDS": ("jwt_leeway_seconds", _integer(0, MAX_LEEWAY_SECONDS)),
    "JWT_FRESH_SECONDS": ("jwt_fresh_seconds", _integer(1)),
    "MFA_ENCRYPTION_KEY": ("mfa_encryption_keys", _fernet_keys),
    "MFA_REQUIRED_ROLES": ("mfa_required_roles", _names),
    "COOKIE_SECURE": ("cookie_secure", _cookie_secure),
    "ARGON2_MEMORY_COST": ("argon2_memory_cost", _integer(8 * 1024, 4 * 1024 * 1024)),
    "ARGON2_TIME_COST": ("argon2_time_cost", _integer(1, 64)),
    "ARGON2_PARALLELISM": ("argon2_parallelism", _integer(1, 64)),
    "HASH_WORKERS": ("hash_workers", _integer(0, 256)),
    "RATE_LIMIT_ENABLED": ("rate_limit_enabled", _boolean),
    "LOGIN_FAILURES_PER_WINDOW": ("login_failures_per_window", _integer(1)),
    "LOGIN_FAILURE_WINDOW_SECONDS": ("login_failure_window_seconds", _integer(1)),
    "AUTH_ATTEMPTS_PER_MINUTE": ("auth_attempts_per_minute", _integer(1)),
    "TRUSTED_PROXIES": ("trusted_proxies", _integer(0, 10)),
    "REQUIRE_VERIFIED_EMAIL": ("require_verified_email", _boolean),
    "MAIL_URL": ("mail_url", _mail_url),
    "MAIL_FROM": ("mail_from", _text),
    "MAIL_TIMEOUT": ("mail_timeout", _integer(1, 300)),
    "MAIL_CA_FILE": ("mail_ca_file", _file),
    "MAIL_CONCURRENCY": ("mail_concurrency", _integer(1, 100)),
    "MAIL_MAX_ATTEMPTS": ("mail_max_attempts", _integer(1, 100)),
    "MAIL_RETRY_SECONDS": ("mail_retry_seconds", _integer(1, 3600)),
    "PUBLIC_URL": ("public_url", _public_url),
    "ALLOWED_HOSTS": ("allowed_hosts", _allowed_hosts),
    "DATABASE_POOL_SIZE": ("database_pool_size", _integer(1, 1000)),
    "DATABASE_TIMEOUT": ("database_timeout", _integer(1, 60)),
    "DATABASE_STATEMENT_CACHE_SIZE": ("database_statement_cache_size", _integer(0)),
    "WS_MAX_MESSAGE_BYTES": ("ws_max_message_bytes", _integer(64, 1_048_576)),
    "WS_MESSAGES_PER_SECOND": ("ws_messages_per_second", _integer(1, 1000)),
    "ACCELERATIONS": ("accelerations", _boolean),
}


def default_instance_path() -> Path:
    """The instance folder: INSTANCE_PATH, else ./instance in the working directory."""
    return Path(os.environ.get("INSTANCE_PATH", "instance")).resolve()


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build Settings from the environment, then explicit overrides (by variable name)."""
    raw: dict[str, Any] = dict(os.environ if environ is None else environ)
    raw.update(overrides or {})
    instance = Path(str(raw.get("INSTANCE_PATH") or default_instance_path())).resolve()
    values: dict[str, Any] = {"instance_path": instance}
    for variable, (name, parse) in PARSERS.items():
        value = raw.get(variable)
        if value is None or (isinstance(value, str) and value == "" and variable != "DATABASE_URL"):
            continue
        values[name] = parse(variable, value) if isinstance(value, str) else value
    values.setdefault("database_url", f"sqlite+aiosqlite:///{instance / 'app.db'}")
    values["secret_key"] = _secret_key(raw.get("SECRET_KEY"), instance)
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _secret_key(raw: Any, instance: Path) -> str:
    if raw is None or raw == "":
        return _persisted_secret(instance)
    key = str(raw)
    if len(key.encode()) < MIN_SECRET_BYTES:
        raise ConfigError("SECRET_KEY", f"must be at least {MIN_SECRET_BYTES} bytes long")
    return key


def _persisted_secret(instance: Path) -> str:
    path = instance / "secret_key"
    try:
        instance.mkdir(parents=True, exist_ok=True)
        # O_EXCL makes concurrent workers agree: one writes, the others read its key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    except OSError as error:
        raise ConfigError(
            "INSTANCE_PATH",
            f"cannot store a generated SECRET_KEY in {path}: {reason(error)}"
            " (set SECRET_KEY, or make the folder writable)",
        ) from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    log.warning("SECRET_KEY is not set: generated one and stored it in %s", path)
    return key


def reason(error: OSError) -> str:
    """An OS error in a few words, without Python's errno prefix: "Permission denied"."""
    return error.strerror or type(error).__name__


def _read_secret(path: Path) -> str:
    for _ in range(50):
        try:
            key = path.read_text().strip()
        except OSError as error:
            raise ConfigError("SECRET_KEY", f"cannot read {path}: {reason(error)}") from None
        if key:
            if len(key.encode()) < MIN_SECRET_BYTES:
                raise ConfigError("SECRET_KEY", f"the key stored in {path} is too short")
            return key
        import time

        time.sleep(0.02)  # another worker is still writing it
    raise ConfigError("SECRET_KEY", f"the key file {path} is empty")


def _check_consistency(settings: Settings) -> None:
    if settings.jwt_algorithm in ASYMMETRIC_ALGORITHMS and settings.jwt_private_key_file is None:
        raise ConfigError(
            "JWT_PRIVATE_KEY_FILE", f"required when JWT_ALGORITHM is {settings.jwt_algorithm}"
        )
    _check_link_base(settings)


def _check_link_base(settings: Settings) -> None:
    # Links in real mails never take a host the operator did not name (a forged Host header
    # would otherwise receive a live reset token). Mail in the log is the developer's own.
    if settings.mail_url is None or settings.public_url is not None:
        return
    if not settings.allowed_hosts:
        raise ConfigError(
            "PUBLIC_URL",
            "required when MAIL_URL is set: the base of links in mails "
            "(or set ALLOWED_HOSTS to build them from the request's host)",
        )
    if settings.trusted_proxies:
        raise ConfigError(
            "PUBLIC_URL",
            "required when MAIL_URL is set behind proxies (TRUSTED_PROXIES): "
            "the request a proxy forwards does not carry the public scheme and host",
        )


def setting_names() -> list[str]:
    """Names of every Settings field, for documentation and tests."""
    return [f.name for f in fields(Settings)]
