"""The Swagger UI page at /docs, served from this origin under the app's own strict CSP.

Swagger UI's files come from the flask-swagger-ui package, whose `dist` folder is Swagger UI's
official static build (its Flask blueprint is not used; Flask is installed anyway, as Quart's
base). No CDN: the page works offline, and no third-party script runs on the origin of the
login pages. The files live under a URL holding the package version, so they are cached for a
year and an upgrade still reaches every browser at once. The start-up script is our own
static/docs.js, because the CSP admits no inline script.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

from quart import Quart, render_template, send_from_directory
from quart.typing import ResponseReturnValue
from quart_schema import hide

from ..errors import NotFound

DIST_PACKAGE = "flask_swagger_ui"
# Only what the page loads: the dist also holds HTML pages (its demo, the OAuth2 redirect)
# that have no business running script on this origin.
ASSETS = frozenset({"swagger-ui.css", "index.css", "swagger-ui-bundle.js"})
YEAR_SECONDS = 365 * 24 * 3600


@cache
def dist_folder() -> Path:
    """Swagger UI's static build inside the installed package, found without importing it."""
    spec = find_spec(DIST_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{DIST_PACKAGE} is not installed: it ships the /docs page's files")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


@cache
def assets_version() -> str:
    """The package version: part of the assets' URLs, so an upgrade changes every one."""
    return version("flask-swagger-ui")


def assets_url() -> str:
    """The URL folder the page loads Swagger UI's files from."""
    return f"/docs/static/{assets_version()}"


async def docs_page() -> ResponseReturnValue:
    """The Swagger UI page over /openapi.json (the app's default CSP applies unchanged)."""
    return await render_template(
        "docs.html", title="quart_auth_app", assets=assets_url(), spec_url="/openapi.json"
    )


async def docs_asset(release: str, name: str) -> ResponseReturnValue:
    """One of Swagger UI's files, cacheable for a year since its URL names the release."""
    if release != assets_version() or name not in ASSETS:
        raise NotFound()
    response = await send_from_directory(dist_folder(), name, cache_timeout=YEAR_SECONDS)
    response.cache_control.immutable = True
    return response


def init_app(app: Quart) -> None:
    """Serve /docs and its files; neither is part of the API it documents."""
    app.add_url_rule("/docs", "docs", hide(docs_page))
    app.add_url_rule("/docs/static/<release>/<name>", "docs_static", hide(docs_asset))
