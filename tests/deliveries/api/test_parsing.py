"""Bodies the management API refuses before they reach a serializer: too large, not JSON, NUL characters."""

from __future__ import annotations

import json

import pytest

from integrations.models import Source

pytestmark = pytest.mark.django_db


def test_a_huge_body_is_a_413_and_nothing_is_written(api, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"name": "Big", "slug": "big", "kind": "http", "padding": "x" * 20_000})

    response = api.post("/api/v1/sources", body, content_type="application/json")

    assert response.status_code == 413
    assert response.json() == {"detail": "The body is over the 9 KB limit."}
    assert not Source.objects.exists()


def test_a_nul_character_is_a_400_that_says_so(api) -> None:
    body = '{"name": "Nul\\u0000", "slug": "nul", "kind": "http"}'

    response = api.post("/api/v1/sources", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"detail": "JSON strings cannot hold NUL characters (\\u0000)."}
    assert not Source.objects.exists()


def test_an_escaped_backslash_before_u0000_is_ordinary_text(api) -> None:
    body = '{"name": "Back\\\\u0000slash", "slug": "backslash", "kind": "http"}'

    response = api.post("/api/v1/sources", body, content_type="application/json")

    assert response.status_code == 201, response.content
    assert Source.objects.get().name == "Back\\u0000slash"


def test_bad_json_is_a_400(api) -> None:
    response = api.post("/api/v1/sources", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")


# Found by the fuzz tests (tests/fuzz/test_admin_json_fuzz.py): JSON Python reads but no database or answer takes.
@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("[" * 5000 + "]" * 5000, "nested more than 64 levels deep"),  # was a RecursionError: a 500
        ('{"url": 1e400}', "1e400 is too large for a JSON number"),  # was stored as Infinity: the answer failed
        ('{"url": "\\ud800"}', "half a surrogate pair"),  # was stored: rendering the answer failed
        ('{"url": NaN}', "NaN is not a JSON number"),
    ],
)
def test_json_no_database_or_answer_could_hold_is_a_400(api, config, says) -> None:
    body = '{"name": "Odd", "slug": "odd", "kind": "generic", "config": ' + config + "}"

    response = api.post("/api/v1/sources", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")
    assert says in response.json()["detail"]
    assert not Source.objects.exists()
