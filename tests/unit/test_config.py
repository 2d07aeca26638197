"""SPEC §2: settings from the environment, refused with one line naming the variable."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from quart_auth_app import create_app
from quart_auth_app.config import ConfigError, load_settings

GOOD_KEY = "k" * 32
ROOT = Path(__file__).resolve().parents[2]


def settings_from(env: dict[str, str], tmp_path: Path) -> object:
    return load_settings({"INSTANCE_PATH": str(tmp_path), **env})


def test_defaults_match_the_spec(tmp_path: Path) -> None:
    settings = load_settings({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": GOOD_KEY})
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    assert settings.redis_url is None
    assert (settings.jwt_issuer, settings.jwt_algorithm) == ("quart_auth_app", "HS256")
    assert settings.jwt_access_token_expires == 3600
    assert settings.jwt_refresh_token_expires == 1_209_600
    assert settings.jwt_refresh_grace_seconds == 10
    assert settings.cookie_secure == "auto"
    assert settings.database_timeout == 5  # SPEC §9


def test_missing_secret_is_generated_once_with_mode_0600(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        first = load_settings({"INSTANCE_PATH": str(tmp_path)})
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_key.encode()) >= 32
    assert any("SECRET_KEY is not set" in record.getMessage() for record in caplog.records)
    again = load_settings({"INSTANCE_PATH": str(tmp_path)})
    assert again.secret_key == first.secret_key


def test_secret_key_is_never_in_the_repr(tmp_path: Path) -> None:
    assert GOOD_KEY not in repr(
        load_settings({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": GOOD_KEY})
    )


def test_short_secret_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "k" * 31})
    assert error.value.variable == "SECRET_KEY"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JWT_ACCESS_TOKEN_EXPIRES", "soon"),
        ("JWT_ACCESS_TOKEN_EXPIRES", "0"),
        ("JWT_REFRESH_TOKEN_EXPIRES", "-5"),
        ("JWT_REFRESH_GRACE_SECONDS", "ten"),
        ("JWT_LEEWAY_SECONDS", "31"),
        ("JWT_ALGORITHM", "none"),
        ("JWT_ALGORITHM", "HS512"),
        ("COOKIE_SECURE", "sometimes"),
        ("DATABASE_URL", "mysql+aiomysql://u@h/db"),
        ("DATABASE_URL", "not a url"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("RATE_LIMIT_ENABLED", "maybe"),
        ("MAIL_URL", "ftp://mail.example.com"),
        ("PUBLIC_URL", "example.com"),
        ("JWT_ISSUER", "   "),
        ("DATABASE_TIMEOUT", "0"),
        ("DATABASE_TIMEOUT", "61"),
        ("DATABASE_TIMEOUT", "2.5"),
    ],
)
def test_malformed_values_name_their_variable(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": GOOD_KEY, variable: value})
    assert error.value.variable == variable
    assert str(error.value).startswith(f"{variable}: ")


def test_asymmetric_algorithm_needs_a_private_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(
            {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": GOOD_KEY, "JWT_ALGORITHM": "RS256"}
        )
    assert error.value.variable == "JWT_PRIVATE_KEY_FILE"


def test_explicit_mapping_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_ISSUER", "from-env")
    app = create_app({"INSTANCE_PATH": str(tmp_path), "JWT_ISSUER": "explicit"})
    assert app.extensions["settings"].jwt_issuer == "explicit"


def _start_with(
    env: dict[str, str], tmp_path: Path, code: str = "import quart_auth_app.asgi"
) -> subprocess.CompletedProcess[str]:
    """What a server process does at start: build the served app from the environment."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin", "INSTANCE_PATH": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_importing_the_package_builds_nothing(tmp_path: Path) -> None:
    # A bad setting is not even read, and nothing is written (no generated key, no database).
    instance = tmp_path / "instance"
    code = (
        "import quart_auth_app, quart_auth_app.models, quart_auth_app.cli, quart_auth_app.testing"
    )
    result = _start_with(
        {"INSTANCE_PATH": str(instance), "DATABASE_URL": "nope://"}, tmp_path, code
    )
    assert result.returncode == 0, result.stderr
    assert not instance.exists()


def test_the_packages_app_is_built_from_the_environment_at_first_use(tmp_path: Path) -> None:
    code = "import quart_auth_app; print(quart_auth_app.app.extensions['settings'].jwt_issuer)"
    result = _start_with({"SECRET_KEY": "k" * 40, "JWT_ISSUER": "first-use"}, tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "first-use"
    result = _start_with(
        {"SECRET_KEY": "short"}, tmp_path, "import quart_auth_app as q; q.app.name"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "quart-auth-app: configuration error: SECRET_KEY: must be at least 32 bytes long"
    ]


def test_bad_setting_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = _start_with({"SECRET_KEY": "short"}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "quart-auth-app: configuration error: SECRET_KEY: must be at least 32 bytes long"
    ]
    assert "Traceback" not in result.stderr


def test_malformed_number_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    result = _start_with({"SECRET_KEY": GOOD_KEY, "JWT_ACCESS_TOKEN_EXPIRES": "1h"}, tmp_path)
    assert result.returncode == 2
    assert "JWT_ACCESS_TOKEN_EXPIRES" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_public_key_as_secret_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    result = _start_with({"SECRET_KEY": pem}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "quart-auth-app: configuration error: SECRET_KEY: "
    )
    assert "Traceback" not in result.stderr


def test_the_wheel_ships_templates_migrations_and_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("quart_auth_app-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "quart_auth_app/templates/base.html",
        "quart_auth_app/templates/login.html",
        "quart_auth_app/templates/dashboard.html",
        "quart_auth_app/static/style.css",
        "quart_auth_app/migrations/env.py",
    ):
        assert expected in names
    assert any(name.startswith("quart_auth_app/data/common-passwords") for name in names)
