"""README "Adding your own protected route": the package's pytest plugin, used as a developer would.

Each test writes a developer's project into a pytester folder and runs pytest on it in a fresh
process, so the plugin comes in through the installed package's `pytest11` entry point.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from quart_auth_app.config import PARSERS
from quart_auth_app.pytest_plugin import MISSING_PYTEST_ASYNCIO

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[2] / "README.md"
# Each example file in the README is a fenced block under a `<!-- example file: NAME -->` marker.
EXAMPLE = re.compile(r"<!-- example file: (\S+) -->\n```python\n(.*?)```", re.DOTALL)
EXAMPLE_FILES = {"myapp.py", "conftest.py", "test_reports.py"}
SECRET = "a developer's own secret key, long enough for it"
TIMEOUT = 180

# A developer's tests of the plugin itself: settings, a database per test, a config override.
SETTINGS_CONFTEST = """
import pytest


@pytest.fixture
def quart_auth_app_config():
    return {"REQUIRE_VERIFIED_EMAIL": "true"}
"""
SETTINGS_TESTS = """
import pytest

from quart_auth_app.testing import DEFAULT_PASSWORD, make_user

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("round", [1, 2])
async def test_a_fresh_database_of_its_own(app, client, tmp_path, round):
    settings = app.extensions["settings"]
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'quart_auth_app' / 'app.db'}"
    assert settings.instance_path == tmp_path / "quart_auth_app"
    assert (settings.redis_url, settings.mail_url, settings.jwt_issuer) == (None, None, "quart_auth_app")
    assert (settings.argon2_memory_cost, settings.argon2_time_cost) == (8192, 1)
    # The same email in both rounds: a database shared between tests would refuse the second.
    await make_user(app, email="ann@example.com")
    login = {"email": "ann@example.com", "password": DEFAULT_PASSWORD}
    response = await client.post("/login", json=login)
    assert response.status_code == 403  # REQUIRE_VERIFIED_EMAIL from quart_auth_app_config
"""


def readme_examples() -> dict[str, str]:
    files = dict(EXAMPLE.findall(README.read_text()))
    assert set(files) == EXAMPLE_FILES
    return files


def write_project(pytester: pytest.Pytester, files: dict[str, str], mode: str = "strict") -> None:
    """A developer's project: their files, and a pytest.ini as careful as ours."""
    pytester.makeini(
        f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    for name, text in files.items():
        (pytester.path / name).write_text(text)


@pytest.fixture(autouse=True)
def bare_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting of the app in the environment, as in a fresh shell (ours sets some)."""
    for name in [*PARSERS, "SECRET_KEY", "INSTANCE_PATH"]:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def developer_shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A shell set up to run the developer's real app; the fixtures must use none of it."""
    real = tmp_path / "real-instance"
    real.mkdir()
    settings = {
        "INSTANCE_PATH": str(real),
        "DATABASE_URL": f"sqlite+aiosqlite:///{real / 'app.db'}",
        "SECRET_KEY": SECRET,
        # Nothing listens on port 9: a test app that used these would fail its requests.
        "REDIS_URL": "redis://127.0.0.1:9/0",
        "MAIL_URL": "smtp://127.0.0.1:9",
        "JWT_ISSUER": "the-real-issuer",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return real


@pytest.mark.parametrize(
    ("mode", "options"),
    [("strict", ["-p", "no:cacheprovider"]), ("auto", [])],
    ids=["strict-no-cacheprovider", "auto"],
)
def test_readme_example_runs_as_written(
    pytester: pytest.Pytester, developer_shell: Path, mode: str, options: list[str]
) -> None:
    write_project(pytester, readme_examples(), mode)
    result = pytester.runpytest_subprocess(*options, timeout=TIMEOUT)
    result.assert_outcomes(passed=4)
    assert not (pytester.path / "instance").exists()
    assert list(developer_shell.iterdir()) == []


def test_readme_example_in_a_bare_shell_leaves_instance_alone(pytester: pytest.Pytester) -> None:
    write_project(pytester, readme_examples())
    result = pytester.runpytest_subprocess(timeout=TIMEOUT)
    result.assert_outcomes(passed=4)
    assert not (pytester.path / "instance" / "app.db").exists()


def test_readme_example_fails_when_the_route_is_wrong(
    pytester: pytest.Pytester, developer_shell: Path
) -> None:
    files = readme_examples()
    route = 'return {"owner": user.public_id}'
    assert route in files["myapp.py"]
    files["myapp.py"] = files["myapp.py"].replace(route, 'return {"owner": user.name}')
    write_project(pytester, files)
    result = pytester.runpytest_subprocess(timeout=TIMEOUT)
    result.assert_outcomes(passed=2, failed=2)


def test_without_the_factory_override_the_route_is_missing(
    pytester: pytest.Pytester, developer_shell: Path
) -> None:
    files = readme_examples()
    del files["conftest.py"]
    write_project(pytester, files)
    result = pytester.runpytest_subprocess(timeout=TIMEOUT)
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(["*assert 404 == 401*"])


def test_fixtures_build_a_throwaway_app_from_the_config_fixture(
    pytester: pytest.Pytester, developer_shell: Path
) -> None:
    write_project(pytester, {"conftest.py": SETTINGS_CONFTEST, "test_settings.py": SETTINGS_TESTS})
    result = pytester.runpytest_subprocess(timeout=TIMEOUT)
    result.assert_outcomes(passed=2)
    assert list(developer_shell.iterdir()) == []


def test_without_pytest_asyncio_pytest_runs_and_app_says_what_is_missing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # pytest-asyncio's own entry point is blocked (-p no:asyncio); importing it fails as if absent.
    shadow = tmp_path / "shadow" / "pytest_asyncio"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("pytest-asyncio is not installed")\n')
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_plain="""
        def test_without_the_app():
            pass

        def test_with_the_app(app):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:asyncio", timeout=TIMEOUT)
    result.assert_outcomes(passed=1, errors=1)
    assert MISSING_PYTEST_ASYNCIO in result.stdout.str()


def test_loading_the_plugin_writes_no_file(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
    )
    pytester.makepyfile(test_plain="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=TIMEOUT)
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "instance").exists()
