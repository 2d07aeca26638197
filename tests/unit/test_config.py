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
from quart_auth_app.allowed_hosts import HostPattern
from quart_auth_app.config import ConfigError, load_settings

from ..conftest import without_root_privilege

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
        ("ALLOWED_HOSTS", "*"),
        ("ALLOWED_HOSTS", "*.example.com"),
        ("ALLOWED_HOSTS", "https://auth.example.com"),
        ("ALLOWED_HOSTS", "auth.example.com, exa mple.com"),
        ("ALLOWED_HOSTS", "under_score.example.com"),
        ("ALLOWED_HOSTS", "bücher.example"),
        ("ALLOWED_HOSTS", "example.com:0"),
        ("ALLOWED_HOSTS", "example.com:65536"),
        ("ALLOWED_HOSTS", "example.com:"),
        ("ALLOWED_HOSTS", "example.com:http"),
        ("ALLOWED_HOSTS", "example.com."),
        ("ALLOWED_HOSTS", "x" * 64 + ".example.com"),
        ("ALLOWED_HOSTS", ".10.0.0.5"),
        ("ALLOWED_HOSTS", "[::1"),
        ("ALLOWED_HOSTS", "[not::an:ip:address:at:all:x]"),
        ("ALLOWED_HOSTS", ", ,"),
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


def test_allowed_hosts_are_normalised(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": GOOD_KEY,
            "ALLOWED_HOSTS": " Localhost, auth.example.org:08443,,.Example.NET, [::1]:8000, 10.0.0.5",
        }
    )
    assert settings.allowed_hosts == (
        HostPattern("localhost"),
        HostPattern("auth.example.org", "8443"),
        HostPattern("example.net", subdomains=True),
        HostPattern("[::1]", "8000"),
        HostPattern("10.0.0.5"),
    )
    assert (
        load_settings({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": GOOD_KEY}).allowed_hosts == ()
    )


MAIL = {"MAIL_URL": "smtp://127.0.0.1:2525"}


@pytest.mark.parametrize(
    "env",
    [MAIL, {**MAIL, "TRUSTED_PROXIES": "1", "ALLOWED_HOSTS": "auth.example.com"}],
    ids=["alone", "behind proxies"],
)
def test_real_smtp_needs_a_configured_link_base(tmp_path: Path, env: dict[str, str]) -> None:
    # Otherwise a forged Host header would receive live reset links (issue 16 §2).
    with pytest.raises(ConfigError) as error:
        load_settings({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": GOOD_KEY, **env})
    assert error.value.variable == "PUBLIC_URL"
    assert str(error.value).startswith("PUBLIC_URL: required when MAIL_URL is set")
    with pytest.raises(ConfigError, match=r"^PUBLIC_URL: "):
        create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": GOOD_KEY, **env})


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"TRUSTED_PROXIES": "2"},
        {**MAIL, "PUBLIC_URL": "https://auth.example.com"},
        {**MAIL, "PUBLIC_URL": "https://auth.example.com", "TRUSTED_PROXIES": "1"},
        {**MAIL, "ALLOWED_HOSTS": "auth.example.com"},
    ],
    ids=[
        "log mode",
        "log mode behind proxies",
        "PUBLIC_URL",
        "PUBLIC_URL behind proxies",
        "ALLOWED_HOSTS",
    ],
)
def test_configured_link_bases_start(tmp_path: Path, env: dict[str, str]) -> None:
    app = create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": GOOD_KEY, **env})
    assert app.extensions["settings"].mail_url == env.get("MAIL_URL")


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


def test_real_smtp_without_public_url_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = _start_with({"SECRET_KEY": GOOD_KEY, **MAIL}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "quart-auth-app: configuration error: PUBLIC_URL: required when MAIL_URL is set: "
        "the base of links in mails"
    )


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


# --- DATABASE_URL: the schemes operators type, the driver they may lack, a path's typo. ---


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://app:p%40ss@db.example.com:5433/auth",
        "postgres://app:p%40ss@db.example.com:5433/auth",
        "postgresql+psycopg2://app:p%40ss@db.example.com:5433/auth",
        "postgresql+asyncpg://app:p%40ss@db.example.com:5433/auth",
    ],
)
def test_postgres_urls_are_served_by_asyncpg(tmp_path: Path, given: str) -> None:
    settings = load_settings(
        {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": GOOD_KEY, "DATABASE_URL": given}
    )
    assert settings.database_url == "postgresql+asyncpg://app:p%40ss@db.example.com:5433/auth"


@pytest.mark.parametrize("given", ["postgresql+psycopg://u@h/db", "postgresql+pg8000://u@h/db"])
def test_other_postgres_drivers_are_refused_with_the_supported_scheme(
    tmp_path: Path, given: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(
            {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": GOOD_KEY, "DATABASE_URL": given}
        )
    assert error.value.variable == "DATABASE_URL"
    assert "postgresql+asyncpg://" in str(error.value)


def test_postgres_without_asyncpg_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As after a plain `pip install .`: the module cannot be found (None in sys.modules).
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(ConfigError) as error:
        load_settings(
            {
                "INSTANCE_PATH": str(tmp_path),
                "SECRET_KEY": GOOD_KEY,
                "DATABASE_URL": "postgresql://u@127.0.0.1/db",
            }
        )
    assert str(error.value) == (
        "DATABASE_URL: PostgreSQL needs asyncpg: pip install 'quart_auth_app[postgres]'"
    )


def test_server_start_without_asyncpg_is_one_line(tmp_path: Path) -> None:
    code = "import sys; sys.modules['asyncpg'] = None; import quart_auth_app.asgi"
    result = _start_with(
        {"SECRET_KEY": GOOD_KEY, "DATABASE_URL": "postgresql://u@127.0.0.1/db"}, tmp_path, code
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "quart-auth-app: configuration error: DATABASE_URL: PostgreSQL needs asyncpg:"
        " pip install 'quart_auth_app[postgres]'"
    ]


def test_sqlite_file_in_a_missing_folder_is_refused_and_nothing_is_created(
    tmp_path: Path,
) -> None:
    typo = tmp_path / "no" / "such" / "dir"
    with pytest.raises(ConfigError) as error:
        load_settings(
            {
                "INSTANCE_PATH": str(tmp_path / "instance"),
                "SECRET_KEY": GOOD_KEY,
                "DATABASE_URL": f"sqlite+aiosqlite:///{typo / 'app.db'}",
            }
        )
    assert str(error.value) == f"DATABASE_URL: folder {typo} does not exist"
    assert not (tmp_path / "no").exists()


def test_server_start_on_a_sqlite_path_typo_is_one_line(tmp_path: Path) -> None:
    typo = tmp_path / "instnace"
    result = _start_with(
        {"SECRET_KEY": GOOD_KEY, "DATABASE_URL": f"sqlite+aiosqlite:///{typo / 'app.db'}"},
        tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"quart-auth-app: configuration error: DATABASE_URL: folder {typo} does not exist"
    ]
    assert not typo.exists()


def test_sqlite_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(ConfigError, match="is not a folder"):
        load_settings(
            {
                "INSTANCE_PATH": str(tmp_path),
                "SECRET_KEY": GOOD_KEY,
                "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'app.db'}",
            }
        )


@pytest.mark.parametrize("relative", [False, True])
async def test_a_new_sqlite_file_in_an_existing_folder_is_created_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    path = "data/new.db" if relative else str(tmp_path / "data" / "new.db")
    app = create_app(
        {
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "SECRET_KEY": GOOD_KEY,
            "DATABASE_URL": f"sqlite+aiosqlite:///{path}",
        }
    )
    async with app.test_app():
        assert (await app.test_client().get("/healthz")).status_code == 200
    assert (tmp_path / "data" / "new.db").is_file()


def test_the_default_database_folder_is_created(tmp_path: Path) -> None:
    instance = tmp_path / "new" / "instance"
    result = _start_with(
        {"SECRET_KEY": GOOD_KEY, "INSTANCE_PATH": str(instance)},
        tmp_path,
        "import asyncio, quart_auth_app as q\n"
        "async def main():\n"
        "    async with q.app.test_app(): pass\n"
        "asyncio.run(main())",
    )
    assert result.returncode == 0, result.stderr
    assert (instance / "app.db").is_file()


def test_read_only_instance_folder_without_secret_key_is_one_line(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o555)
    result = subprocess.run(
        [*without_root_privilege(), sys.executable, "-c", "import quart_auth_app.asgi"],
        env={"PATH": "/usr/bin:/bin", "INSTANCE_PATH": str(instance)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"quart-auth-app: configuration error: INSTANCE_PATH: cannot store a generated SECRET_KEY"
        f" in {instance / 'secret_key'}: Permission denied (set SECRET_KEY, or make the folder"
        " writable)"
    ]
