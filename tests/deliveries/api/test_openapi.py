"""The OpenAPI 3 document: valid, warning-free, every resource in it with examples, secrets marked writeOnly; the
docs pages are served from the project's static files (no CDN)."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from django.core.management import call_command
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db

RESOURCES = ("sources", "destinations", "functions", "events", "deliveries", "replays", "workspace")


@pytest.fixture
def document(anonymous_api) -> dict[str, Any]:
    response = anonymous_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def schema_properties(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{name}.{field}": spec
        for name, component in document["components"]["schemas"].items()
        for field, spec in component.get("properties", {}).items()
    }


def test_the_document_is_valid_openapi_3(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.")


def test_drf_spectacular_reads_every_view_without_a_warning() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null", stdout=out, stderr=err)
    assert "Warning" not in err.getvalue() + out.getvalue()


def test_every_resource_and_the_signal_call_are_documented(document: dict[str, Any]) -> None:
    paths = set(document["paths"])
    for resource in RESOURCES:
        assert any(re.fullmatch(rf"/api/v1/{resource}/?(\{{[^}}]+\}}/?)?", p) for p in paths), resource
    assert "/v1/admin/integrations" in paths
    stripped = {p.rstrip("/") for p in paths}
    assert "/api/v1/destinations/{slug}/test" in stripped
    for action in ("test", "rollback", "versions", "versions/{number}"):
        assert f"/api/v1/functions/{{slug}}/{action}" in stripped
    # The Tracking API is Segment's, documented there; it is not a management operation.
    assert not any(p.startswith("/v1/track") or p.startswith("/v1/batch") for p in paths)


def test_every_write_operation_has_an_example(document: dict[str, Any]) -> None:
    missing = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if method in ("post", "put", "patch") and body is not None and not body.get("examples"):
                missing.append(f"{method.upper()} {path}")
    assert missing == []


SECRET_NAMES = {
    "credentials",
    "settings",
    "write_key",
    "client_id",
    "client_secret",
    "signing_secret",
    "insert_secrets",
    "secrets",
}
# A function's `settings` is its declaration (names and types, never a value), and Run test's `settings` the plain
# values beside its write-only `secrets`: not secrets.
NOT_SECRET = {
    "Function.settings",
    "FunctionRequest.settings",
    "PatchedFunctionRequest.settings",
    "FunctionVersionDetail.settings",
    "FunctionTestRequest.settings",
}


def test_secrets_are_write_only_in_the_document(document: dict[str, Any]) -> None:
    properties = schema_properties(document)
    secrets = {
        name: spec for name, spec in properties.items() if name.split(".")[1] in SECRET_NAMES and name not in NOT_SECRET
    }
    requests = {name: spec for name, spec in secrets.items() if name.split(".")[0].endswith("Request")}
    assert len(requests) >= 6, "the document describes credentials, settings and write keys"
    assert [name for name, spec in requests.items() if spec.get("writeOnly") is not True] == []
    answers = {name: spec for name, spec in secrets.items() if name not in requests}
    said_set = {name for name, spec in answers.items() if re.search(r"/(SecretSet|CredentialsSet)\b", json.dumps(spec))}
    assert set(answers) - said_set == {"CreatedSource.write_key"}  # a new source's write key, in the create answer


def test_the_docs_pages_load_their_scripts_from_our_static_files(anonymous_api) -> None:
    for url in ("/api/docs/", "/api/redoc/"):
        page = anonymous_api.get(url).content.decode()
        scripts = re.findall(r'<script[^>]+src="([^"]+)"', page)
        assert scripts, url
        assert all(src.startswith("/static/") for src in scripts), scripts
        assert "cdn" not in page.lower()
