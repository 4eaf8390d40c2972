"""A Marketer crawls the whole admin and never receives a secret: no destination credential, source write key or
signing secret, OAuth token, in plain text or base64- or URL-encoded. A superuser's crawl reaches the credential
forms (so a leak there would show) and sees that credentials are stored, never their values."""

from __future__ import annotations

import base64
import html
import json
import re
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote, quote_plus, urljoin, urlsplit

import pytest
import responses
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from deliveries.engine.schema_fold import fold
from deliveries.models import Attempt, Delivery, Event, Replay
from integrations.forms import credential_keys
from integrations.models import AccessToken, Destination, Source
from integrations.vendors import VENDORS
from integrations.webhooks import FUNCTIONS
from tests.conftest import basic_auth
from tests.vendor_kit import make_profile_function, profile

pytestmark = pytest.mark.django_db

MAX_PAGES = 300
MAX_VARIANTS = 6  # query-string variants per path: a list's sort and filter links multiply fast
# GET links that change something, end the session or only confirm a deletion.
SKIP = ("/logout/", "/delete/", "/retry/", "/retry-these/", "/password_change/")

OAUTH_TOKEN = "oauthTokenCrawl-9f8e7d6c5b4a"
WRITE_KEYS = {"website": "wk_crawlWebsite_4b3c2d1e", "app": "wk_crawlApp_7a6b5c4d"}
# Every source function's kind, with its signing secret.
WEBHOOK_SOURCES = {kind: f"whsec_crawl{kind.title()}Secret_{n:02d}aa22bb" for n, kind in enumerate(FUNCTIONS)}


def credential_value(vendor: str, key: str) -> str:
    return f"crawl{vendor.title().replace('_', '')}{key.title().replace('_', '')}Secret0x5eed"


def credentials_of(vendor: str) -> dict[str, Any]:
    """Distinctive values for every credential key of the vendor; a JSON key (secret headers) holds a header."""
    if "function" in profile(vendor):  # a destination function's credentials are its code's sensitive settings
        return {name: credential_value(vendor, name) for name in profile(vendor)["credentials"]}
    values: dict[str, Any] = {}
    for key in credential_keys(VENDORS[vendor].credentials_class):
        value = credential_value(vendor, key.name)
        values[key.name] = value if key.text else {"X-Crawl-Key": value}
    return values


def encodings(secret: str) -> set[str]:
    """The secret as a page might carry it: as is, escaped, URL-encoded, and inside base64 at any alignment."""
    forms = {secret, html.escape(secret), quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    raw = secret.encode()
    for blob in (raw, raw + b":", b":" + raw):  # HTTP Basic carries "key:" and ":secret"
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(blob).decode()
            forms |= {encoded, encoded.rstrip("=")}
            # Inside a longer base64 text the secret starts 0, 1 or 2 bytes into a group: the middle of each
            # alignment's encoding is the same whatever surrounds it.
            for offset in (1, 2):
                forms.add(encode(b"\0" * offset + blob).decode()[4:-4])
    return {f for f in forms if len(f) >= 12}


@dataclass
class Seeded:
    destinations: list[Destination]
    sources: list[Source]
    events: list[Event]
    test_delivery: Delivery
    replay: Replay
    credentials: list[str]  # destination credentials and the OAuth token: nobody is shown these
    signing_secrets: list[str]  # nobody either
    write_keys: list[str]  # administrators only

    def marketer_secrets(self) -> list[str]:
        return self.credentials + self.signing_secrets + self.write_keys


def token_or_refusal(request: Any) -> tuple[int, dict[str, str], str]:
    """The vendors' endpoints: a token call gets a token, every send is refused (so the attempt is recorded)."""
    if "token" in request.url:
        token = {
            "access_token": OAUTH_TOKEN,
            "token_type": "Bearer",
            "expires_in": 1079,
            "rest_instance_url": "https://mc563885gzs27c5t9-63k636ttgm.rest.marketingcloudapis.com/",
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(token)
    return 400, {"Content-Type": "application/json"}, json.dumps({"message": "bad field", "success": False})


def record_attempts(destination: Destination, deliveries: list[Delivery]) -> None:
    """Send through the real vendor (its HTTP mocked) and keep the attempt as the worker does: redacted."""
    events = [d.event.payload for d in deliveries]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, re.compile(r"https://.*"), callback=token_or_refusal)
        mock.add_callback(responses.POST, re.compile(r"https://.*"), callback=token_or_refusal)
        mock.add_callback(responses.PUT, re.compile(r"https://.*"), callback=token_or_refusal)
        results = destination.build_vendor().deliver(events)
    now = timezone.now()
    for delivery, result in zip(deliveries, results, strict=True):
        Attempt.objects.create(
            delivery=delivery,
            number=1,
            started_at=now,
            duration_ms=12,
            outcome=result.outcome,
            status_code=result.status_code,
            error_code=result.error_code,
            error_message=result.error_message,
            hint=result.hint,
            exchanges=result.exchanges,
        )
        status = Delivery.Status.DELIVERED if result.ok else Delivery.Status.FAILED
        Delivery.objects.filter(pk=delivery.pk).update(
            status=status,
            attempts=1,
            error_code=result.error_code,
            error_message=result.error_message,
            hint=result.hint,
        )


def seed(client: Client) -> Seeded:
    website = Source.objects.create(name="Website", slug="website", write_key=WRITE_KEYS["website"])
    app = Source.objects.create(name="App", slug="app", write_key=WRITE_KEYS["app"])
    hooks = [
        Source.objects.create(
            name=f"{FUNCTIONS[kind].label} source",
            slug=f"{kind}-source",
            kind=kind,
            write_key=f"wk_crawl{kind.title()}_0c0d0e0f",
            settings={"signing_secret": secret},
            last_request_body=json.dumps({"id": "evt_1", "type": "customer.created", "data": {"object": {}}}),
        )
        for kind, secret in WEBHOOK_SOURCES.items()
    ]
    destinations = []
    for vendor in VENDORS:
        make_profile_function(vendor)  # a destination function's code, when the vendor runs one
        destination = Destination.objects.create(
            name=f"{VENDORS[vendor].label} crawl",
            slug=f"{vendor.replace('_', '-')}-crawl",
            vendor=vendor,
            config=profile(vendor)["config"],  # a working config: the vendor really builds (and redacts) requests
            credentials=credentials_of(vendor),
            filter={"types": ["identify", "track"]},
            paused=True,  # routed and kept: nothing is sent while the events come in
        )
        destination.sources.set([website, app])
        destinations.append(destination)
    journey = next(d for d in destinations if d.vendor == "sfmc_journey")
    AccessToken.objects.create(
        key="crawl-token-key",
        destination=journey,
        value={"access_token": OAUTH_TOKEN, "expires_in": 1079},
        expires_at=timezone.now() + timedelta(minutes=15),
        fetched_at=timezone.now(),
    )

    # Events through the Tracking API, as the SDKs send them (the write key in the Authorization header).
    for n, (kind, body) in enumerate(
        [
            ("identify", {"userId": "user-1", "traits": {"email": "ada@example.com", "plan": "pro"}}),
            ("track", {"userId": "user-1", "event": "Signed Up", "properties": {"plan": "pro"}}),
            ("track", {"anonymousId": "anon-2", "event": "Order Completed", "properties": {"total": 120}}),
            ("page", {"userId": "user-3", "name": "Pricing"}),
        ]
    ):
        key = WRITE_KEYS["website"] if n % 2 == 0 else WRITE_KEYS["app"]
        response = client.post(
            f"/v1/{kind}", data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=basic_auth(key)
        )
        assert response.status_code == 200, response.content
    events = list(Event.objects.order_by("id"))
    for destination in destinations:
        deliveries = list(destination.deliveries.select_related("event").order_by("id"))
        assert deliveries, f"nothing was routed to {destination.vendor}"
        record_attempts(destination, deliveries)
    Destination.objects.update(paused=False)
    test_delivery = Delivery.objects.create(
        event=events[0],
        destination=destinations[0],
        status=Delivery.Status.FAILED,
        is_test=True,
        next_attempt_at=timezone.now(),
        created_at=timezone.now(),
    )
    replay = Replay.objects.create(
        criteria={"events": [e.pk for e in events]},
        description="The crawl's events",
        status=Replay.Status.DONE,
        total=len(events),
        processed=len(events),
    )
    replay.destinations.set(destinations)
    fold()

    credentials = [
        credential_value(d.vendor, k.name)
        for d in destinations
        for k in credential_keys(VENDORS[d.vendor].credentials_class)
    ]
    return Seeded(
        destinations=destinations,
        sources=[website, app, *hooks],
        events=events,
        test_delivery=test_delivery,
        replay=replay,
        credentials=[*credentials, OAUTH_TOKEN],
        signing_secrets=list(WEBHOOK_SOURCES.values()),
        write_keys=[*WRITE_KEYS.values(), *(s.write_key for s in hooks)],
    )


def named_pages(seeded: Seeded) -> list[str]:
    """The marketer's own pages, by their agreed names; a name that does not resolve yet is skipped."""
    destination, event = seeded.destinations[0], seeded.events[0]
    names: list[tuple[str, list[Any], str]] = [
        ("admin:deliveries_event_debugger", [], ""),
        ("admin:deliveries_event_debugger", [], f"?source={seeded.sources[0].pk}"),
        ("admin:deliveries_event_debugger_feed", [], "?after=0"),
        ("admin:deliveries_event_debugger_detail", [event.pk], ""),
        ("admin:deliveries_event_schema", [], f"?source={seeded.sources[0].pk}&window=7d"),
        ("admin:deliveries_event_schema_properties", [], f"?source={seeded.sources[0].pk}&type=track&name=Signed Up"),
        ("admin:deliveries_event_tester", [], ""),
        ("admin:deliveries_event_tester", [], f"?event={event.pk}&destination={destination.pk}"),
        ("admin:deliveries_event_tester_result", [seeded.test_delivery.pk], ""),
        ("admin:deliveries_delivery_event_delivery_index", [], ""),
        ("admin:deliveries_replay_add", [], "?events=" + ",".join(str(e.pk) for e in seeded.events)),
        ("admin:deliveries_replay_changelist", [], ""),
        ("admin:deliveries_replay_change", [seeded.replay.pk], ""),
        ("admin:deliveries_replay_progress", [seeded.replay.pk], ""),
    ]
    for d in seeded.destinations:
        names.append(("admin:deliveries_delivery_event_delivery", [d.pk], "?window=1h"))
        names.append(("admin:deliveries_event_tester", [], f"?event={event.pk}&destination={d.pk}"))
        names.append(("admin:integrations_destination_change", [d.pk], ""))
    for s in seeded.sources:
        names.append(("admin:integrations_source_change", [s.pk], ""))
        names.append(("admin:integrations_source_try", [s.pk], ""))
    urls = []
    for name, args, query in names:
        try:
            urls.append(reverse(name, args=args) + query)
        except NoReverseMatch:
            continue  # a page not written yet: it is crawled from its links once it exists
    return urls


LINK = re.compile(r'(?:href|data-url|data-detail|data-progress-url|data-result-url|data-replay-url)="([^"#]*)')


@dataclass
class Crawl:
    statuses: dict[str, int] = field(default_factory=dict)
    bodies: dict[str, str] = field(default_factory=dict)

    def run(self, client: Client, start: Iterable[str]) -> Crawl:
        queue = deque(["/admin/", *start])
        seen: set[str] = set(queue)
        variants: Counter[str] = Counter()
        while queue and len(self.statuses) < MAX_PAGES:
            url = queue.popleft()
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            text = body.decode(errors="replace")
            self.statuses[url] = response.status_code
            self.bodies[url] = text
            found = [html.unescape(link) for link in LINK.findall(text)]
            if response.status_code in (301, 302):
                found.append(response["Location"])
            for link in found:
                absolute = urljoin(url, link)
                parts = urlsplit(absolute)
                if parts.netloc not in ("", "testserver") or not parts.path.startswith("/admin/"):
                    continue
                if any(skip in parts.path for skip in SKIP):
                    continue
                target = parts.path + (f"?{parts.query}" if parts.query else "")
                if target in seen or variants[parts.path] >= MAX_VARIANTS:
                    continue
                seen.add(target)
                variants[parts.path] += 1
                queue.append(target)
        return self

    def leaks(self, secrets: Iterable[str]) -> list[str]:
        found = []
        for secret in secrets:
            for form in encodings(secret):
                found += [f"{secret!r} (as {form!r}) in {url}" for url, body in self.bodies.items() if form in body]
        return found

    def unexpected(self, allowed: set[int]) -> dict[str, int]:
        return {url: status for url, status in self.statuses.items() if status not in allowed}


@pytest.fixture
def seeded(client: Client) -> Seeded:
    return seed(client)


def test_a_marketer_crawling_every_admin_page_receives_no_secret(client: Client, marketer, seeded: Seeded):
    client.force_login(marketer)

    crawl = Crawl().run(client, named_pages(seeded))

    assert crawl.leaks(seeded.marketer_secrets()) == []
    assert crawl.unexpected({200, 302, 403}) == {}
    # The crawl is not vacuous: it read the pages that hold secrets, and they answered.
    for obj in [*seeded.destinations, *seeded.sources]:
        url = reverse(f"admin:integrations_{obj._meta.model_name}_change", args=[obj.pk])
        assert crawl.statuses.get(url) == 200, url
    for delivery in Delivery.objects.filter(attempts=1)[:3]:
        url = reverse("admin:deliveries_delivery_change", args=[delivery.pk])
        assert crawl.statuses.get(url) == 200, url
    assert len(crawl.statuses) > 60
    # And the pages say where the secrets are without them.
    journey = next(d for d in seeded.destinations if d.vendor == "sfmc_journey")
    journey_page = crawl.bodies[reverse("admin:integrations_destination_change", args=[journey.pk])]
    assert "stored — only an administrator can see or change them" in journey_page
    assert 'name="credentials__' not in journey_page


def test_a_superuser_crawl_reaches_the_credential_forms_and_sees_no_stored_value(admin_client: Client, seeded: Seeded):
    crawl = Crawl().run(admin_client, named_pages(seeded))

    # Write keys are the administrator's to copy; credentials, tokens and signing secrets are shown to nobody.
    assert crawl.leaks(seeded.credentials + seeded.signing_secrets) == []
    assert crawl.unexpected({200, 302, 403}) == {}
    forms = [url for url, body in crawl.bodies.items() if 'name="credentials__' in body]
    assert {reverse("admin:integrations_destination_change", args=[d.pk]) for d in seeded.destinations} <= set(forms)
    journey = next(d for d in seeded.destinations if d.vendor == "sfmc_journey")
    page = crawl.bodies[reverse("admin:integrations_destination_change", args=[journey.pk])]
    assert re.search(r'data-key="client_secret">••••••••', page)  # stored, shown as set
    # The crawl would catch a write key: the superuser's source page carries it.
    assert crawl.leaks([WRITE_KEYS["website"]]) != []


def test_the_secret_forms_cover_basic_auth_and_url_encoding() -> None:
    secret = "crawlSecretValue_0123"
    header = base64.b64encode(f"{secret}:".encode()).decode()
    wrapped = base64.b64encode(f'{{"key": "{secret}"}}'.encode()).decode()

    forms = encodings(secret)

    assert header in forms
    assert any(form in wrapped for form in forms)
    assert quote_plus(secret) in forms
