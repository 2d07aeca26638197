"""SPEC §8: /openapi.json describes every JSON route, and /docs shows it under a strict CSP."""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import schemathesis
from quart import Quart

from ..conftest import BROWSER, bearer

# Routes that only serve browsers (pages, form posts answered by redirects) and the docs' own.
HTML_ONLY = {
    "static",
    "openapi",
    "docs",
    "pages.login_page",
    "pages.signup_page",
    "recovery.forgot_page",
    "recovery.reset_page",
    "browser.account",
    "browser.change_name",
    "browser.change_password",
    "browser.revoke_session",
    "browser.delete_account",
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
}
# Signed-in callers send nothing; others name their address in the body.
OPTIONAL_AUTH = {("/verify/request", "post")}


async def openapi(client: Any) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = await response.get_json()
    return document


def json_operations(app: Quart) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every route in the URL map that is not HTML-only."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in HTML_ONLY:
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
                assert schema["title"] == "ErrorOut", (path, method, code)
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
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["cookie"] == {"type": "apiKey", "in": "cookie", "name": "jwt_token"}
    for key, operation in operations(document).items():
        if key in PROTECTED:
            assert operation["security"] == [{"bearer": []}, {"cookie": []}], key
            assert "401" in {str(code) for code in operation["responses"]}, key
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


async def test_docs_page_loads_swagger_under_a_strict_csp(client: Any) -> None:
    response = await client.get("/docs", headers=BROWSER)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = (await response.get_data()).decode()
    assert "/openapi.json" in page and "swagger-ui" in page
    policy = response.headers["Content-Security-Policy"]
    script_src = next(part for part in policy.split(";") if part.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and "'sha256-" in script_src
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


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
