"""The seed article's SFMC destination function, verbatim, through the real Tracking API, the real worker
(`manage.py worker`) and V8, to the vendor sandbox's Marketing Cloud: its module-level token cache keeps one
token for every event, each identify enters the journey with the article's Data fields, and no credential or
token reaches an Attempt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deliveries.models import Attempt
from integrations.functions.declaration import FunctionCode
from integrations.management.commands.try_it import IDENTIFY
from integrations.management.commands.try_it import SANDBOX as DEMO_SANDBOX
from integrations.models import Destination, Function, Source
from integrations.sandbox import Sandbox
from integrations.vendors.function import FunctionVendor
from integrations.vendors.state import MemoryState
from tests.e2e.conftest import post, statuses, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.one_database]

SEED = Path(__file__).resolve().parents[2] / "integrations" / "functions" / "examples" / "sfmc_journey.js"
DEMO = Path(__file__).resolve().parents[2] / "cdphub" / "demo_workspace.json"
DECLARATION = [
    {"name": "sfmcAuthenticationEndpoint", "type": "string", "required": True},
    {"name": "sfmcPostJourneyEndpoint", "type": "string", "required": True},
    {"name": "sfmcJourneyKey", "type": "string", "required": True},
    {"name": "sfmcmid", "type": "string"},
    {"name": "clientid", "type": "string", "required": True, "sensitive": True},
    {"name": "clientsecret", "type": "string", "required": True, "sensitive": True},
]
CREDENTIALS = {"clientid": "sandbox-sfmc-client", "clientsecret": "sandbox-sfmc-secret"}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0, seed=13) as sb:
        yield sb


@pytest.fixture
def journey(transactional_db, sandbox: Sandbox) -> Destination:
    source = Source.objects.create(name="Website", slug="website", write_key="wk_e2e_function")
    function = Function(name="SFMC journey (seed)", slug="sfmc-seed", kind="destination", code=SEED.read_text())
    function.settings = DECLARATION
    function.full_clean()
    function.save()
    destination = Destination(
        name="Welcome journey (function)",
        slug="welcome-function",
        vendor="function",
        config={
            "function": "sfmc-seed",
            "settings": {
                "sfmcAuthenticationEndpoint": f"{sandbox.url}/sfmc/auth/v2/token",
                "sfmcPostJourneyEndpoint": f"{sandbox.url}/sfmc/rest/interaction/v1/events",
                "sfmcJourneyKey": "APIEvent-welcome-function",
                "sfmcmid": "514000001",
            },
        },
        credentials=CREDENTIALS,
        filter={"types": ["identify"]},
    )
    destination.full_clean()
    destination.save()
    destination.sources.add(source)
    return destination


def identifies(count: int) -> list[dict]:
    return [
        {
            "type": "identify",
            "userId": f"lead-{i}",
            "messageId": f"fn-lead-{i}",
            "traits": {"email": f"lead-{i}@example.com", "name": f"Lead {i}", "company": {"industry": "Retail"}},
        }
        for i in range(count)
    ]


def test_the_seed_function_runs_unchanged_and_reuses_its_token_for_every_event(start_worker, journey, sandbox):
    start_worker(CDPHUB_WORKERS="1")  # one V8 context: the article's module-level cache is per instance

    post(Source.objects.get(slug="website"), identifies(40))
    wait_until(lambda: statuses(journey).get("delivered") == 40, 60, "40 identifies delivered by the function")

    assert sandbox.counters["sfmc_tokens_issued"] == 1, "the article's token cache kept one token for 40 events"
    entries = sorted(sandbox.journey_entries, key=lambda e: int(e["contactKey"].split("-")[1]))
    assert [e["contactKey"] for e in entries] == [f"lead-{i}" for i in range(40)]
    assert entries[7] == {
        "eventDefinitionKey": "APIEvent-welcome-function",
        "contactKey": "lead-7",
        "data": {"userid": "lead-7", "email": "lead-7@example.com", "name": "Lead 7", "industry": "Retail"},
        "eventInstanceId": entries[7]["eventInstanceId"],
        "async": False,
    }
    attempts = Attempt.objects.filter(delivery__destination=journey)
    recorded = json.dumps(list(attempts.values_list("exchanges", "logs")))
    for secret in CREDENTIALS.values():
        assert secret not in recorded
    assert "/interaction/v1/events" in recorded
    assert set(attempts.values_list("outcome", flat=True)) == {"delivered"}


def test_an_identify_the_seed_code_cannot_read_fails_with_its_line_and_is_not_retried(start_worker, journey, sandbox):
    start_worker(CDPHUB_WORKERS="1")
    no_company = {
        "type": "identify",
        "userId": "lead-x",
        "messageId": "fn-lead-x",
        "traits": {"email": "x@example.com"},
    }

    post(Source.objects.get(slug="website"), [no_company])
    wait_until(lambda: statuses(journey).get("failed") == 1, 30, "the identify without traits.company failed")

    attempt = Attempt.objects.get(delivery__destination=journey)
    assert attempt.outcome == "failed"
    assert attempt.error_code == "function_error"
    assert "TypeError" in attempt.error_message
    assert "industry" in attempt.error_message
    assert "function.js:" in attempt.error_message  # the line of the article's code that threw
    assert sandbox.journey_entries == []


def test_the_demo_workspace_runs_the_seed_function_verbatim_on_the_printed_identify(transactional_db):
    """`make run`'s printed identify enters the demo's function journey (the sandbox on 127.0.0.1:9100 there)."""
    demo = json.loads(DEMO.read_text(encoding="utf-8"))
    [spec] = [f for f in demo["functions"] if f["slug"] == "sfmc-journey-seed"]
    assert spec["code"] == SEED.read_text(encoding="utf-8"), "the demo's function is the article's code, unchanged"
    [entry] = [d for d in demo["destinations"] if d["vendor"] == "function"]
    function = FunctionCode(spec["slug"], spec["kind"], spec["code"], spec["settings"])

    with Sandbox(port=0, seed=17) as sb:
        settings = {k: v.replace(DEMO_SANDBOX, sb.url) for k, v in entry["config"]["settings"].items()}
        vendor = FunctionVendor(
            {**entry["config"], "settings": settings},
            entry["credentials"],
            state=MemoryState(functions={function.slug: function}),
        )
        [result] = vendor.deliver([{"type": "identify", "messageId": "demo-1", **IDENTIFY}])

        assert result.outcome == "delivered", result.error_message
        assert [(e["eventDefinitionKey"], e["contactKey"]) for e in sb.journey_entries] == [
            ("APIEvent-welcome-function", "user-1")
        ]
        assert sb.journey_entries[0]["data"]["industry"] == "Software"
