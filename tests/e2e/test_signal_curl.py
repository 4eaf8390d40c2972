"""The seed's Datafly Signal curl, verbatim but for the hub's address and the token, against a live hub: it creates
the Marketing Cloud journey for source src_abc123, and an identify of that source enters the journey through a real
worker. The body names a real tenant (mc-abc123xyz.auth.marketingcloudapis.com); with CDPHUB_SANDBOX_URL the worker's
calls to it go to the vendor sandbox's SFMC fake, and the Attempt shows the URLs actually called."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import requests

from deliveries.models import Attempt
from integrations.models import ApiToken, Destination, Source
from integrations.sandbox import Sandbox
from tests.conftest import basic_auth
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.one_database]

# /work/shared/reference/seeds/003_*.txt, "Management API setup", as printed there.
SEED_CURL = """curl -X POST http://localhost:8084/v1/admin/integrations \\
-H "Authorization: Bearer YOUR_TOKEN" \\
-H "Content-Type: application/json" \\
-d '{
"source_id": "src_abc123",
"vendor": "salesforce_marketing_cloud",
"name": "Marketing Cloud — Welcome Journey",
"enabled": true,
"config": {
"tenant_subdomain": "mc-abc123xyz",
"client_id": "abc123clientid",
"client_secret": "shh-secret-value",
"event_definition_key": "datafly_lead_submitted"
},
"consent_categories": ["marketing"]
}'"""
# The journey's Data in the seed's example payload.
LEAD = {
    "email": "jane.doe@example.com",
    "first_name": "Jane",
    "last_name": "Doe",
    "phone": "+447700900123",
    "lead_type": "newsletter",
    "lead_value": 0,
}


def journeys(sandbox: Sandbox) -> list[dict[str, Any]]:
    return requests.get(f"{sandbox.url}/_sandbox/journeys", timeout=5).json()["journeys"]


def test_the_seeds_curl_creates_the_journey_and_an_identify_enters_it(
    live_server, start_worker, sandbox: Sandbox, django_user_model
) -> None:
    source = Source.objects.create(name="Website", slug="src_abc123", write_key="wk_e2e_signal")
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")
    _, token = ApiToken.issue(admin, "Datafly Signal migration")
    start_worker(CDPHUB_SANDBOX_URL=sandbox.url)

    command = SEED_CURL.replace("http://localhost:8084", live_server.url).replace("YOUR_TOKEN", token)
    ran = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, check=False)

    assert ran.returncode == 0, ran.stderr
    answer = json.loads(ran.stdout)
    destination = Destination.objects.get()
    assert answer["id"] == destination.pk
    assert answer["credentials"] == {"client_id": "set", "client_secret": "set"}
    assert "shh-secret-value" not in ran.stdout
    assert destination.config == {"subdomain": "mc-abc123xyz", "event_definition_key": "datafly_lead_submitted"}
    assert list(destination.sources.all()) == [source]

    identify = {"userId": "user-123", "traits": LEAD}
    sent = requests.post(
        f"{live_server.url}/v1/identify",
        json=identify,
        headers={"Authorization": basic_auth(source.write_key)},
        timeout=10,
    )
    assert (sent.status_code, sent.json()) == (200, {"success": True})

    [entry] = wait_until(lambda: journeys(sandbox), 30, "the journey entry at the sandbox")
    assert entry["eventDefinitionKey"] == "datafly_lead_submitted"
    assert entry["contactKey"] == "jane.doe@example.com"
    assert entry["data"] == {**LEAD, "user_id": "user-123"}

    # The worker called the sandbox in place of the tenant's hosts, with the seed's package, and says so.
    attempt = wait_until(lambda: Attempt.objects.filter(outcome="delivered").first(), 10, "the delivered attempt")
    urls = [exchange["request"]["url"] for exchange in attempt.exchanges]
    assert urls == [f"{sandbox.url}/sfmc/auth/v2/token", f"{sandbox.url}/sfmc/rest/interaction/v1/events"]
    assert "shh-secret-value" not in json.dumps(attempt.exchanges)
    [token_call] = sandbox.received(service="sfmc", path_contains="/v2/token")
    assert token_call["body"]["client_id"] == "abc123clientid"
