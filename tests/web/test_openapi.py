"""SPEC §8: /openapi.json describes every JSON route, and /docs shows it under a strict CSP."""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import schemathesis
from quart import Quart

from quart_auth_app.web.security import CONTENT_SECURITY_POLICY

from ..conftest import BROWSER, bearer

# Routes that only serve browsers (pages, form posts answered by redirects) and the docs' own.
HTML_ONLY = {
    "static",
    "openapi",
    "docs",
    "docs_static",
    "pages.login_page",
    "pages.signup_page",
    "recovery.forgot_page",
    "recovery.reset_page",
    "browser.account",
    "browser.change_name",
    "browser.change_password",
    "browser.revoke_session",
    "browser.create_token",
    "browser.revoke_token",
    "browser.delete_account",
    "mfa.reauth_page",
    "mfa_page.setup",
    "mfa_page.confirm",
    "mfa_page.regenerate",
    "mfa_page.download_codes",
    "mfa_page.disable",
    "admin_page.admin_page",
    "admin_page.set_active",
    "admin_page.set_roles",
}
PROTECTED = {
    ("/dashboard", "get"),
    ("/logout", "post"),
    ("/logout/all", "post"),
    ("/me", "get"),
    ("/me", "patch"),
    ("/me", "delete"),
    ("/me/password", "post"),
    ("/me/sessions", "get"),
    ("/me/sessions/{session_id}", "delete"),
    ("/me/mfa/totp", "post"),
    ("/me/mfa/totp", "delete"),
    ("/me/mfa/totp/confirm", "post"),
    ("/me/mfa/recovery-codes", "post"),
    ("/reauth", "post"),
    ("/admin/users", "get"),
    ("/admin/users/{public_id}", "get"),
    ("/admin/users/{public_id}", "patch"),
    ("/admin/users/{public_id}/logout", "post"),
    ("/me/tokens", "get"),
    ("/me/tokens", "post"),
    ("/me/tokens/{token_id}", "delete"),
}
# Signed-in callers send nothing; others name their address in the body.
OPTIONAL_AUTH = {("/verify/request", "post")}
# Every URL a page names in an attribute (stylesheets, scripts, icons, links, forms).
PAGE_URL = re.compile(r"""\b(?:src|href|action)\s*=\s*["']([^"']*)["']""")
# Source expressions that name no other host.
SAME_ORIGIN_SOURCES = {"'self'", "'none'", "data:"}


async def openapi(client: Any) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = await response.get_json()
    return document


def json_operations(app: Quart) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every route in the URL map that is not HTML-only."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in HTML_ONLY or rule.websocket:  # websockets: README, not OpenAPI
            continue
        path = re.sub(r"<(?:[^:<>]*:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                found.add((path, method.lower()))
    return found


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


async def test_every_json_route_is_documented(app: Quart, client: Any) -> None:
    documented = operations(await openapi(client))
    expected = json_operations(app)
    assert len(expected) >= 19
    assert expected - set(documented) == set()
    assert set(documented) - expected == set()  # no HTML-only page leaks into the API


async def test_every_operation_documents_success_and_errors(client: Any) -> None:
    for (path, method), operation in operations(await openapi(client)).items():
        codes = {int(code) for code in operation["responses"]}
        assert any(200 <= code < 300 for code in codes), (path, method)
        assert operation.get("summary"), (path, method)
        for code, response in operation["responses"].items():
            if int(code) >= 400 and path != "/healthz":
                schema = response["content"]["application/json"]["schema"]
                # A right password with TOTP on: the error shape plus the mfa_token (SPEC §11).
                mfa = (path, code) == ("/login", "403")
                assert schema["title"] == ("MfaRequiredOut" if mfa else "ErrorOut"), (path, code)
        if "requestBody" in operation:
            assert {400, 413} <= codes, (path, method)
            # Bodies are required unless every field is optional (refresh cookie, resend).
            optional = path in ("/token/refresh", "/verify/request")
            assert operation["requestBody"]["required"] is not optional, (path, method)
            assert set(operation["requestBody"]["content"]) == {
                "application/json",
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            }
        if method in ("post", "patch", "delete"):
            assert 403 in codes, (path, method)  # cross-origin refusal


async def test_protected_operations_require_bearer_or_cookie(client: Any) -> None:
    document = await openapi(client)
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT, or a personal access token (qaa_pat_...)",
    }
    assert schemes["cookie"] == {"type": "apiKey", "in": "cookie", "name": "jwt_token"}
    for key, operation in operations(document).items():
        if key in PROTECTED:
            assert operation["security"] == [{"bearer": []}, {"cookie": []}], key
            codes = {str(code) for code in operation["responses"]}
            assert {"401", "403"} <= codes, key  # 403: a scope, a role or a session needed
        elif key in OPTIONAL_AUTH:
            assert operation["security"] == [{"bearer": []}, {"cookie": []}, {}], key
        else:
            assert "security" not in operation, key


async def test_documented_models_are_the_validated_ones(client: Any) -> None:
    paths = (await openapi(client))["paths"]
    signup = paths["/signup"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert signup["required"] == ["name", "email", "password"]
    assert signup["properties"]["password"]["minLength"] == 8
    response = await client.post(
        "/signup", json={"name": "Ann", "email": "a@x.io", "password": "short"}
    )
    assert response.status_code == 400
    assert "password" in (await response.get_json())["errors"]
    created = paths["/signup"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert set(created["required"]) == {"public_id", "name", "email"}
    tokens = paths["/login"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"access_token", "refresh_token", "token_type", "expires_in"} <= set(
        tokens["properties"]
    )


async def test_the_document_is_valid_openapi(client: Any) -> None:
    document = await openapi(client)
    assert document["openapi"].startswith("3.")
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # against the OpenAPI meta-schema; raises on any structural error
    assert len(list(schema.get_all_operations())) == len(operations(document))


async def docs_page(client: Any) -> tuple[Any, str, list[str]]:
    response = await client.get("/docs", headers=BROWSER)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = (await response.get_data()).decode()
    return response, page, PAGE_URL.findall(page)


async def test_docs_page_names_only_this_origin(client: Any) -> None:
    _, page, urls = await docs_page(client)
    assert 'data-spec-url="/openapi.json"' in page
    assert len(urls) == 5  # icon, two stylesheets, Swagger UI, our start-up script
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        assert (await client.get(url)).status_code == 200, url
    assert "<script>" not in page  # no inline script: the CSP would refuse it anyway
    assert "//" not in page  # no absolute or scheme-relative URL anywhere in the page


async def test_docs_page_has_the_apps_strict_csp_naming_no_other_host(client: Any) -> None:
    response, _, _ = await docs_page(client)
    policy = response.headers["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY  # not relaxed for the docs
    directives = dict(part.strip().split(None, 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    for name, sources in directives.items():
        assert set(sources.split()) <= SAME_ORIGIN_SOURCES, name
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


async def test_swagger_ui_files_are_cached_for_a_year_and_nothing_else_is_served(
    client: Any,
) -> None:
    _, _, urls = await docs_page(client)
    bundle = next(url for url in urls if url.endswith("/swagger-ui-bundle.js"))
    folder, _, _ = bundle.rpartition("/")
    script = await client.get(bundle)
    assert script.mimetype in ("text/javascript", "application/javascript")
    assert b"SwaggerUIBundle" in await script.get_data()
    cache_control = script.headers["Cache-Control"]
    assert "max-age=31536000" in cache_control and "immutable" in cache_control
    style = await client.get(f"{folder}/swagger-ui.css")
    assert style.status_code == 200 and style.mimetype == "text/css"
    # The package's own HTML pages and other files stay unserved, as does any other release.
    for name in ("index.html", "oauth2-redirect.html", "swagger-ui.js", "LICENSE", "VERSION"):
        assert (await client.get(f"{folder}/{name}")).status_code == 404, name
    assert (await client.get("/docs/static/0.0.1/swagger-ui-bundle.js")).status_code == 404


async def test_the_verification_link_is_documented_as_it_answers(client: Any) -> None:
    operation = (await openapi(client))["paths"]["/verify"]["get"]
    parameters = [(p["in"], p["name"], p["required"]) for p in operation["parameters"]]
    assert parameters == [("query", "token", True)]
    responses = operation["responses"]
    assert set(responses) == {"200", "400", "429"}  # no redirect: browsers get a page
    ok = responses["200"]["content"]["application/json"]["schema"]
    assert ok["title"] == "MessageOut"
    assert "errors.token" in operation["description"]
    assert "HTML page" in operation["description"]


async def test_documented_responses_match_real_ones(client: Any, signed_in: Any) -> None:
    document = await openapi(client)
    paths = document["paths"]
    headers = bearer(signed_in.tokens.access_token)
    for path in ("/me", "/me/sessions", "/dashboard", "/healthz", "/.well-known/jwks.json"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, path
        content = paths[path]["get"]["responses"]["200"]["content"]["application/json"]
        # Nested models are $refs into components: resolve them against the whole document.
        schema = {**content["schema"], "components": document["components"]}
        validator = jsonschema_rs.validator_for(schema)
        assert validator.is_valid(await response.get_json()), path
    missing = await client.get("/me")
    error_schema = paths["/me"]["get"]["responses"]["401"]["content"]["application/json"]["schema"]
    assert jsonschema_rs.validator_for(error_schema).is_valid(await missing.get_json())
