"""A crawl of the whole management API, as an administrator and as a Marketer, finds no secret in any response:
no destination credential, write key, signing secret or OAuth token, in plain text, escaped, URL- or
base64-encoded. Write-only means write-only for administrators too; the crawl reads the JSON and the browsable
API's HTML of every list, every object and every page of every list.

The workspace is the admin crawl's (tests/test_marketer_sees_no_secrets.py): every vendor with distinctive
credentials (a destination function's sensitive settings among them), every source function with a signing secret,
events sent with write keys, recorded attempts whose token call returned an OAuth token. Functions add theirs: an
insert function's secrets on a destination, a JavaScript source's sensitive setting, and a destination function
that logs its key and sends it, whose recorded attempt keeps the console lines and the exchange.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import responses
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from deliveries.models import Attempt, Delivery
from integrations.models import Destination, Function, Source
from tests.test_marketer_sees_no_secrets import Seeded, encodings, seed

pytestmark = pytest.mark.django_db

MAX_RESPONSES = 600
LISTS = ("sources", "destinations", "functions", "events", "deliveries", "replays")
INSERT_SECRET = "crawlInsertLookupToken_6e5d4c3b"
SOURCE_SECRET = "crawlJsSourceApiToken_2a3b4c5d"
SOURCE_SIGNING_SECRET = "whsec_crawlJsSourceSigning_7f8e"
LOGGER_KEY = "crawlLoggerFunctionKey_9c8b7a6f"
LOGGER_CODE = """async function onTrack(event, settings) {
  console.log("sending with " + settings.apiKey);
  await fetch("https://logger.example.com/in?key=" + settings.apiKey, {
    method: "POST",
    headers: { "X-Key": settings.apiKey },
    body: JSON.stringify({ key: settings.apiKey, user: event.userId }),
  });
}
"""


def api_urls(value: Any) -> list[str]:
    """Every link to the API inside a JSON answer (the router's root, `next` and `previous`, `url` fields)."""
    found: list[str] = []
    if isinstance(value, dict):
        for item in value.values():
            found += api_urls(item)
    elif isinstance(value, list):
        for item in value:
            found += api_urls(item)
    elif isinstance(value, str) and ("/api/" in value) and value.startswith(("http://testserver/", "/")):
        parts = urlsplit(value)
        found.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return found


def detail_urls(list_path: str, data: Any) -> list[str]:
    items = data.get("results", []) if isinstance(data, dict) else data if isinstance(data, list) else []
    base = list_path.split("?")[0].rstrip("/")
    return [f"{base}/{item.get('slug') or item['id']}" for item in items if isinstance(item, dict) and "id" in item]


@dataclass
class ApiCrawl:
    statuses: dict[str, int] = field(default_factory=dict)
    bodies: dict[str, str] = field(default_factory=dict)

    def run(self, client: APIClient, also: list[str] | None = None) -> ApiCrawl:
        start = ["/api/v1/", "/api/v1/workspace", "/api/schema/"] + [f"/api/v1/{name}" for name in LISTS]
        start += also or []
        queue, seen = deque(start), set(start)
        while queue and len(self.statuses) < MAX_RESPONSES:
            url = queue.popleft()
            for variant, accept in ((url, "application/json"), (url, "text/html")):
                response = client.get(variant, HTTP_ACCEPT=accept)
                key = f"{variant} [{accept}]"
                self.statuses[key] = response.status_code
                self.bodies[key] = response.content.decode(errors="replace")
            json_response = client.get(url, HTTP_ACCEPT="application/json")
            if json_response.status_code != 200 or "json" not in json_response.get("Content-Type", ""):
                continue
            data = json_response.json()
            links = api_urls(data)
            if any(url.split("?")[0].rstrip("/") == f"/api/v1/{name}" for name in LISTS):
                links += detail_urls(url, data)
            for link in links:
                if link not in seen and not link.startswith("/api/schema"):
                    seen.add(link)
                    queue.append(link)
        return self

    def leaks(self, secrets: list[str]) -> list[str]:
        return [
            f"{secret!r} (as {form!r}) in {url}"
            for secret in secrets
            for form in encodings(secret)
            for url, body in self.bodies.items()
            if form in body
        ]


def seed_functions(seeded: Seeded) -> None:
    """Functions and what runs them, with distinctive secrets (added to the seeded workspace's lists)."""
    enrich = Function(
        name="Enrich", slug="crawl-enrich", kind="insert", code="async function onTrack(e, s) { return e; }"
    )
    enrich.settings = [{"name": "lookupToken", "type": "string", "sensitive": True}]
    enrich.save()
    Destination.objects.filter(vendor="webhook").update(
        insert_function=enrich, insert_secrets={"lookupToken": INSERT_SECRET}
    )
    declared = [{"name": "apiToken", "type": "string", "sensitive": True}]
    code = "async function onRequest(request, settings) { Segment.track({userId: 'u', event: 'Paid'}); }"
    Function(name="Billing", slug="crawl-billing", kind="source", code=code, settings=declared).save()
    Source.objects.create(
        name="Billing",
        slug="crawl-billing-source",
        kind="function",
        write_key="wk_crawlJsSource_5d6e7f80",
        config={"function": "crawl-billing", "signature_header": "X-Signature"},
        settings={"apiToken": SOURCE_SECRET, "signing_secret": SOURCE_SIGNING_SECRET},
    )
    logger = Function(name="Logger", slug="crawl-logger", code=LOGGER_CODE.replace("sending", "posting"))
    logger.settings = [{"name": "apiKey", "type": "string", "sensitive": True, "required": True}]
    logger.save()
    logger.code = LOGGER_CODE
    logger.save()  # two versions to read
    destination = Destination.objects.create(
        name="Logger", slug="crawl-logger", vendor="function", config={"function": "crawl-logger"}
    )
    Destination.objects.filter(pk=destination.pk).update(credentials={"apiKey": LOGGER_KEY})
    destination.refresh_from_db()
    event = seeded.events[1]  # a track
    delivery = Delivery.objects.create(event=event, destination=destination, created_at=timezone.now())
    with responses.RequestsMock() as mock:
        mock.post("https://logger.example.com/in", status=500, body=f"bad key {LOGGER_KEY}")
        [result] = destination.build_vendor().deliver([event.payload])
    Attempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=timezone.now(),
        outcome=result.outcome,
        status_code=result.status_code,
        error_message=result.error_message,
        exchanges=result.exchanges,
        logs=result.logs,
    )
    assert result.logs  # not vacuous: the console line and the exchange were recorded, redacted
    assert result.exchanges
    seeded.credentials += [INSERT_SECRET, LOGGER_KEY, SOURCE_SECRET]
    seeded.signing_secrets.append(SOURCE_SIGNING_SECRET)


@pytest.fixture
def seeded(client: Client) -> Seeded:
    seeded = seed(client)
    seed_functions(seeded)
    return seeded


def every_secret(seeded: Seeded) -> list[str]:
    return seeded.credentials + seeded.signing_secrets + seeded.write_keys


FUNCTION_PAGES = [f"/api/v1/functions/{slug}/versions" for slug in ("crawl-logger", "crawl-enrich", "crawl-billing")]


@pytest.mark.parametrize("who", ["api", "marketer_api"])
def test_a_crawl_of_every_api_response_finds_no_secret(request, who: str, seeded: Seeded) -> None:
    crawl = ApiCrawl().run(request.getfixturevalue(who), also=FUNCTION_PAGES)

    assert crawl.leaks(every_secret(seeded)) == []
    # Not vacuous: every object of every resource was read, in JSON and in the browsable API.
    ok = {url for url, status in crawl.statuses.items() if status == 200}
    for source in seeded.sources:
        assert f"/api/v1/sources/{source.slug} [application/json]" in ok
    for destination in seeded.destinations:
        assert f"/api/v1/destinations/{destination.slug} [text/html]" in ok
    for event in seeded.events:
        assert f"/api/v1/events/{event.pk} [application/json]" in ok
    assert sum("/api/v1/deliveries/" in url for url in ok) >= 2 * len(seeded.destinations)
    assert f"/api/v1/replays/{seeded.replay.pk} [application/json]" in ok
    assert "/api/v1/workspace [application/json]" in ok
    assert not [url for url, status in crawl.statuses.items() if status >= 500]
    if who == "api":  # functions are read by who may view them (a Marketer, if the group was given that right)
        for function in Function.objects.all():
            assert f"/api/v1/functions/{function.slug} [text/html]" in ok
        assert "/api/v1/functions/crawl-logger/versions/1 [application/json]" in ok
        logged = [
            body for url, body in crawl.bodies.items() if url.startswith("/api/v1/deliveries/") and "[REDACTED]" in body
        ]
        assert any("sending with [REDACTED]" in body for body in logged)  # the console line, read and redacted


def test_the_crawl_would_find_a_secret_in_a_response(api, seeded: Seeded) -> None:
    crawl = ApiCrawl().run(api)
    crawl.bodies["planted"] = json.dumps({"credentials": seeded.credentials[0]})
    assert crawl.leaks(seeded.credentials) != []
