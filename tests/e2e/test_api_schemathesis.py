"""Schemathesis against the live management API: operations generated from /api/schema/ (valid and invalid
inputs, a bounded number per operation) get no 5xx and answers that match the document.

The hub is pytest-django's live server with a seeded workspace; schemathesis runs as its own process (its CLI),
authenticated with an administrator's API token, so it reaches every operation, the writes included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from integrations.models import ApiToken, Destination, Source
from tests.conftest import basic_auth

# On SQLite only (one_database): the API answers the same on PostgreSQL, where tests/fuzz/test_nul_characters.py
# checks what only PostgreSQL refuses; its 37 s there went to the fault tests.
pytestmark = [pytest.mark.e2e, pytest.mark.one_database, pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("CDPHUB_SCHEMATHESIS_EXAMPLES", "8"))  # per operation; more with the variable
# The coverage phase (every boundary and type of every field, ~90 s here) runs with CDPHUB_SCHEMATHESIS_FULL=1;
# `make test` runs the documented examples and random inputs on SQLite and on PostgreSQL.
PHASES = "examples,coverage,fuzzing" if os.environ.get("CDPHUB_SCHEMATHESIS_FULL") == "1" else "examples,fuzzing"


def seed(client) -> None:
    """A source, a destination that fails fast (a closed loopback port) and a few events with their deliveries."""
    source = Source.objects.create(name="Website", slug="website", write_key="wk_schemathesis_site")
    destination = Destination.objects.create(
        name="Hook",
        slug="hook",
        vendor="webhook",
        config={"url": "http://127.0.0.1:9/in"},
        credentials={"signing_secret": "whsec_schemathesis"},
    )
    destination.sources.add(source)
    for n in range(3):
        body = {"userId": f"user-{n}", "event": "Signed Up", "properties": {"n": n}}
        auth = basic_auth(source.write_key)
        response = client.post("/v1/track", json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=auth)
        assert response.status_code == 200


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(
    live_server, client, django_user_model, tmp_path: Path
):
    seed(client)
    admin_user = django_user_model.objects.create_superuser("ada", "ada@example.com", "pw")
    _, token = ApiToken.issue(admin_user, "schemathesis")
    report = tmp_path / "report"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{live_server.url}/api/schema/",
            "--url",
            live_server.url,
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            str(EXAMPLES),
            "--phases",
            PHASES,
            "--seed",
            "12",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
            "--no-color",
            "--report",
            "ndjson",
            "--report-dir",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # schemathesis keeps its files in the working directory
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    # Not vacuous: it reached the resources and made many calls.
    assert "api/v1/destinations" in output
