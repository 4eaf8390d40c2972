"""A crawl of the whole management API, as an administrator and as a Marketer, finds no secret in any response:
no destination credential, write key, signing secret or OAuth token, in plain text, escaped, URL- or
base64-encoded. Write-only means write-only for administrators too; the crawl reads the JSON and the browsable
API's HTML of every list, every object and every page of every list.

The workspace is the admin crawl's (tests/test_marketer_sees_no_secrets.py): every vendor with distinctive
credentials, every source function with a signing secret, events sent with write keys, recorded attempts whose
token call returned an OAuth token.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.test_marketer_sees_no_secrets import Seeded, encodings, seed

pytestmark = pytest.mark.django_db

MAX_RESPONSES = 600
LISTS = ("sources", "destinations", "events", "deliveries", "replays")


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

    def run(self, client: APIClient) -> ApiCrawl:
        start = ["/api/v1/", "/api/v1/workspace", "/api/schema/"] + [f"/api/v1/{name}" for name in LISTS]
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


@pytest.fixture
def seeded(client: Client) -> Seeded:
    return seed(client)


def every_secret(seeded: Seeded) -> list[str]:
    return seeded.credentials + seeded.signing_secrets + seeded.write_keys


@pytest.mark.parametrize("who", ["api", "marketer_api"])
def test_a_crawl_of_every_api_response_finds_no_secret(request, who: str, seeded: Seeded) -> None:
    crawl = ApiCrawl().run(request.getfixturevalue(who))

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


def test_the_crawl_would_find_a_secret_in_a_response(api, seeded: Seeded) -> None:
    crawl = ApiCrawl().run(api)
    crawl.bodies["planted"] = json.dumps({"credentials": seeded.credentials[0]})
    assert crawl.leaks(seeded.credentials) != []
