"""The OpenAPI document describes what the views return: typed bodies, declared errors, the
download content types, examples; and the API docs (Swagger UI, Redoc) load nothing from outside.
"""

from __future__ import annotations

import pytest
import yaml
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiYamlRenderer

OBJECT_ANY = {"type": "object", "additionalProperties": {}}


@pytest.fixture(scope="module")
def schema() -> dict:
    # Built once for the module, as /api/schema/ builds it (the served document is checked by
    # tests/studies/test_api.py and the fuzz test).
    generator = SchemaGenerator()
    return yaml.safe_load(OpenApiYamlRenderer().render(generator.get_schema(public=True)))


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_no_operation_answers_an_untyped_object(schema):
    untyped = [
        f"{method} {path} {code}"
        for method, path, operation in _operations(schema)
        for code, response in operation["responses"].items()
        for content in response.get("content", {}).values()
        if content["schema"] == OBJECT_ANY
    ]
    assert untyped == []


def test_every_operation_declares_its_refusals(schema):
    missing = []
    for method, path, operation in _operations(schema):
        codes = set(operation["responses"])
        expected = {"403"} | ({"404"} if "{" in path else set())
        if method in ("POST", "PUT") or any(
            p["in"] == "query" for p in operation.get("parameters", [])
        ):
            expected.add("400")
        if not expected <= codes:
            missing.append(f"{method} {path}: {sorted(expected - codes)}")
    assert missing == []


def test_errors_share_named_components(schema):
    components = schema["components"]["schemas"]
    assert components["ErrorDetail"]["required"] == ["detail"]
    assert components["ValidationError"]["additionalProperties"]["anyOf"][1]["type"] == "array"
    forbidden = schema["paths"]["/api/studies/{slug}/"]["get"]["responses"]["403"]
    assert forbidden["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorDetail"
    }


def test_a_views_own_400_still_admits_validation_errors(schema):
    create = schema["paths"]["/api/studies/"]["post"]["responses"]["400"]
    assert create["content"]["application/json"]["schema"]["anyOf"] == [
        {"$ref": "#/components/schemas/ProtocolInvalid"},
        {"$ref": "#/components/schemas/ValidationError"},
    ]


def test_service_refusals_and_downloads_are_declared(schema):
    paths = schema["paths"]
    download = paths["/api/studies/{slug}/exports/{export_id}/download/"]["get"]["responses"]
    assert set(download["200"]["content"]) == {"application/zip"}
    assert {"409", "410"} <= set(download)
    report = paths["/api/studies/{slug}/analysis-runs/{run_id}/report/"]["get"]["responses"]
    assert set(report["200"]["content"]) == {"text/html"}
    participants = paths["/api/studies/{slug}/participants/"]["get"]["responses"]["200"]
    assert set(participants["content"]) == {"application/json", "text/csv"}
    assert participants["content"]["application/json"]["schema"]["type"] == "array"
    transition = paths["/api/studies/{slug}/transition/"]["post"]["responses"]["409"]
    assert transition["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LaunchBlocked"
    }


@pytest.mark.parametrize(
    ("path", "method", "code"),
    [
        ("/api/studies/", "post", "201"),
        ("/api/studies/{slug}/versions/", "get", "200"),
        ("/api/studies/{slug}/participants/", "get", "200"),
        ("/api/studies/{slug}/invitations/", "get", "200"),
        ("/api/studies/{slug}/team-invitations/", "get", "200"),
        ("/api/studies/{slug}/analysis-runs/", "get", "200"),
        ("/api/studies/{slug}/exports/", "get", "200"),
    ],
)
def test_main_resources_carry_an_example(schema, path, method, code):
    content = schema["paths"][path][method]["responses"][code]["content"]["application/json"]
    assert content.get("examples"), f"{method.upper()} {path} has no example"


@override_settings(DEBUG=False)
def test_an_api_url_that_matches_no_route_answers_json_404(client):
    response = client.get("/api/studies/companion-rct/exports/not-a-number/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    # Pages outside the API keep the HTML page.
    assert client.get("/no-such-page/")["Content-Type"].startswith("text/html")


def test_redoc_is_served_from_the_sidecar_with_no_inline_script(client):
    response = client.get("/api/redoc/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js" in html
    assert "googleapis" not in html and "cdn" not in html.lower()
    assert "<script>" not in html
    policy = response["Content-Security-Policy"]
    assert "script-src 'self';" in policy
