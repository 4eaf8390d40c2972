"""/api/v1/destinations: CRUD by slug, filters and pages, Destination.clean() as 400s per field, credentials
write-only and an administrator's to set, and a Marketer's mapping and filter only, exactly as in the admin."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.db.models.query import QuerySet

from integrations.crypto import CANNOT_DECRYPT, Undecryptable
from integrations.models import Destination, Source
from integrations.signals import destinations_resumed

pytestmark = pytest.mark.django_db

CLIENT_SECRET = "sfmcApiClientSecret_7f6e5d4c"
CLIENT_ID = "sfmcApiClientId_1a2b3c4d"
JOURNEY = {
    "name": "Welcome journey",
    "slug": "welcome-journey",
    "vendor": "sfmc_journey",
    "sources": ["website"],
    "config": {"subdomain": "mc-abc123", "event_definition_key": "APIEvent-welcome"},
    "credentials": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    "filter": {"types": ["identify"], "events": [], "condition": None},
    "mapping": {"ContactKey": "userId", "Data": {"email": "traits.email"}},
}
EXPECTED = {
    "list": {"admin": 200, "marketer": 200, "anonymous": 401, "revoked": 401},
    "retrieve": {"admin": 200, "marketer": 200, "anonymous": 401, "revoked": 401},
    "create": {"admin": 201, "marketer": 403, "anonymous": 401, "revoked": 401},
    "change mapping": {"admin": 200, "marketer": 200, "anonymous": 401, "revoked": 401},
    "change config": {"admin": 200, "marketer": 403, "anonymous": 401, "revoked": 401},
    "destroy": {"admin": 204, "marketer": 403, "anonymous": 401, "revoked": 401},
}


@pytest.fixture
def journey(source) -> Destination:
    destination = Destination.objects.create(
        name="Welcome journey",
        slug="welcome-journey",
        vendor="sfmc_journey",
        config=JOURNEY["config"],
        credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        filter=JOURNEY["filter"],
        mapping=JOURNEY["mapping"],
    )
    destination.sources.add(source)
    return destination


def stored(destination: Destination) -> dict:
    destination.refresh_from_db()
    return {f.name: getattr(destination, f.name) for f in Destination._meta.concrete_fields}


def test_each_caller_gets_what_its_rights_allow(caller, destination) -> None:
    who, client = caller
    url = "/api/v1/destinations/welcome-hook"
    new = {"name": "New", "slug": "new", "vendor": "webhook", "config": {"url": "https://example.com/in"}}
    calls = {
        "list": lambda: client.get("/api/v1/destinations"),
        "retrieve": lambda: client.get(url),
        "create": lambda: client.post("/api/v1/destinations", new, format="json"),
        "change mapping": lambda: client.patch(url, {"mapping": {"id": "messageId"}}, format="json"),
        "change config": lambda: client.patch(url, {"config": {"url": "https://example.com/b"}}, format="json"),
        "destroy": lambda: client.delete(url),
    }
    got = {action: call().status_code for action, call in calls.items()}
    assert got == {action: statuses[who] for action, statuses in EXPECTED.items()}
    assert Destination.objects.filter(slug="new").exists() == (who == "admin")


def test_an_administrator_creates_a_destination_whose_credentials_are_never_answered(api, source, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    response = api.post("/api/v1/destinations", JOURNEY, format="json")

    assert response.status_code == 201, response.json()
    answer = response.json()
    assert answer["credentials_set"] == {"client_id": "set", "client_secret": "set"}
    assert "credentials" not in answer
    assert answer["sources"] == ["website"]
    assert answer["state"] == "enabled"
    assert answer["retry_deadline_seconds"] == 4 * 3600
    for text in (response.content.decode(), caplog.text):
        assert CLIENT_SECRET not in text
        assert CLIENT_ID not in text
    row = Destination.objects.get(slug="welcome-journey")
    assert row.credentials == JOURNEY["credentials"]
    assert list(row.sources.all()) == [source]
    for url in ("/api/v1/destinations", "/api/v1/destinations/welcome-journey"):
        assert CLIENT_SECRET not in api.get(url).content.decode()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"config": {}}, "config", "config.url: required"),
        ({"config": {"url": "ftp://example.com"}}, "config", "config.url: must start with http:// or https://"),
        ({"config": "https://example.com"}, "config", "config: must be an object"),
        ({"config": {"url": "https://example.com", "verb": "GET"}}, "config", "config.verb: unknown setting"),
        ({"mapping": {"email": "traits.email ||"}}, "mapping", "mapping.email: 'traits.email ||' is not a valid"),
        ({"filter": {"condition": "properties.total >"}}, "filter", "filter.condition:"),
        ({"filter": {"types": ["click"]}}, "filter", "'click' is not an event type"),
        ({"vendor": "pigeon"}, "vendor", '"pigeon" is not a valid choice.'),
        ({"credentials": {"api_key": "x"}}, "credentials", "credentials.api_key: unknown setting"),
        ({"credentials": "whsec_x"}, "credentials", "Must be an object of secret values"),
        ({"sources": ["nowhere"]}, "sources", "No source with slug nowhere."),
        ({"sources": "website"}, "sources", "Must be a list."),
        ({"enabled": "true"}, "enabled", "Must be true or false."),
        ({"timeout": "10"}, "timeout", "Must be a number."),
        ({"timeout": 0}, "timeout", "timeout: must be more than 0 seconds"),
        ({"rate_limit": -1}, "rate_limit", None),
        ({"retry_deadline_seconds": 0}, "retry_deadline_seconds", "retry_deadline_seconds: must be more than 0"),
        ({"retry_deadline_seconds": 1e300}, "retry_deadline_seconds", "Too large"),
        ({"consent_categories": "Advertising"}, "consent_categories", "must be a list of category names"),
        ({"colour": "blue"}, "colour", "Unknown field: use "),
        ({"state": "enabled"}, "state", "Read-only: leave it out."),
        ({"last_error": ""}, "last_error", "Read-only: leave it out."),
    ],
)
def test_a_bad_destination_is_a_400_under_its_field_and_nothing_is_saved(api, source, change, field, message) -> None:
    body = {"name": "Hook", "slug": "hook", "vendor": "webhook", "config": {"url": "https://example.com/in"}} | change
    response = api.post("/api/v1/destinations", body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field]
    if message:
        assert message in " ".join(errors[field]), errors
    assert not Destination.objects.exists()


def test_every_problem_is_listed_at_once(api) -> None:
    body = {"name": "Hook", "slug": "hook", "vendor": "webhook", "mapping": {"a": "b ||"}, "filter": {"x": 1}}
    errors = api.post("/api/v1/destinations", body, format="json").json()
    assert set(errors) == {"config", "mapping", "filter"}


def test_a_failed_create_leaves_no_row(api, source, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise DatabaseError("the disk is full")

    monkeypatch.setattr(QuerySet, "bulk_create", broken)  # the sources' rows, written after the destination's
    with pytest.raises(DatabaseError):
        api.post("/api/v1/destinations", JOURNEY, format="json")
    assert not Destination.objects.exists()


def test_a_credential_left_out_is_kept_and_null_removes_one(api, destination) -> None:
    url = "/api/v1/destinations/welcome-hook"
    body = {"credentials": {"signing_secret": "whsec_b25l", "headers": {"X-Api-Key": "k1"}}}
    assert api.patch(url, body, format="json").json()["credentials_set"] == {"signing_secret": "set", "headers": "set"}

    answer = api.patch(url, {"credentials": {"headers": None}}, format="json").json()
    assert answer["credentials_set"] == {"signing_secret": "set"}
    assert stored(destination)["credentials"] == {"signing_secret": "whsec_b25l"}

    assert api.patch(url, {"name": "Renamed"}, format="json").status_code == 200
    assert stored(destination)["credentials"] == {"signing_secret": "whsec_b25l"}


def test_a_required_credential_cannot_be_removed(api, journey) -> None:
    before = stored(journey)
    response = api.patch("/api/v1/destinations/welcome-journey", {"credentials": {"client_id": None}}, format="json")
    assert response.status_code == 400
    assert response.json() == {"credentials": ["credentials.client_id: required"]}
    assert stored(journey) == before


def test_a_new_vendor_drops_the_old_vendors_credentials(api, journey) -> None:
    body = {"vendor": "webhook", "config": {"url": "https://example.com/in"}, "mapping": {}}
    response = api.patch("/api/v1/destinations/welcome-journey", body, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["credentials_set"] == {}
    assert stored(journey)["credentials"] == {}


def test_a_put_keeps_the_credentials_it_leaves_out(api, journey) -> None:
    body = {k: v for k, v in JOURNEY.items() if k != "credentials"} | {"name": "Journey"}
    response = api.put("/api/v1/destinations/welcome-journey", body, format="json")
    assert response.status_code == 200, response.json()
    row = stored(journey)
    assert (row["name"], row["credentials"]) == ("Journey", JOURNEY["credentials"])


def test_retry_deadline_is_given_in_seconds(api, destination) -> None:
    answer = api.patch("/api/v1/destinations/welcome-hook", {"retry_deadline_seconds": 90.5}, format="json").json()
    assert answer["retry_deadline_seconds"] == 90.5
    assert stored(destination)["retry_deadline"] == timedelta(seconds=90.5)


def test_a_marketer_reads_destinations_without_knowing_which_credentials_are_stored(marketer_api, journey) -> None:
    response = marketer_api.get("/api/v1/destinations/welcome-journey")
    assert response.json()["credentials_set"] is None
    assert CLIENT_SECRET not in response.content.decode()


def test_a_marketer_changes_the_mapping_and_the_filter(marketer_api, journey) -> None:
    before = stored(journey)
    mapping = {"ContactKey": "userId", "Data": {"email": "traits.email || properties.email"}}
    body = {"mapping": mapping, "filter": {"types": ["identify", "track"]}}
    response = marketer_api.patch("/api/v1/destinations/welcome-journey", body, format="json")
    assert response.status_code == 200, response.json()
    after = stored(journey)
    assert (after["mapping"], after["filter"]) == (mapping, {"types": ["identify", "track"]})
    unchanged = {k: v for k, v in before.items() if k not in ("mapping", "filter", "updated_at")}
    assert {k: after[k] for k in unchanged} == unchanged


@pytest.mark.parametrize(
    "body",
    [
        {"credentials": {"client_secret": "mine"}},
        {"credentials": {"client_secret": "mine"}, "mapping": {"ContactKey": "userId"}},
        {"config": {"subdomain": "mc-other", "event_definition_key": "x"}},
        {"enabled": False},
        {"name": "Mine"},
        {"sources": []},
    ],
)
def test_a_marketer_changing_anything_else_is_refused_and_nothing_changes(marketer_api, journey, body) -> None:
    before = stored(journey)
    response = marketer_api.patch("/api/v1/destinations/welcome-journey", body, format="json")
    assert response.status_code == 403
    assert "mapping and filter only" in response.json()["detail"]
    assert stored(journey) == before
    assert [s.slug for s in journey.sources.all()] == ["website"]


def test_a_marketers_bad_mapping_is_a_400(marketer_api, journey) -> None:
    before = stored(journey)
    body = {"mapping": {"ContactKey": "userId ||"}}
    response = marketer_api.patch("/api/v1/destinations/welcome-journey", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["mapping"]
    assert stored(journey) == before


def test_a_marketer_may_change_the_mapping_while_the_config_is_an_administrators_problem(marketer_api, source) -> None:
    """As in the admin: a problem in a field the Marketer cannot change does not stop their change."""
    broken = Destination.objects.create(name="Hook", slug="hook", vendor="webhook", config={})
    response = marketer_api.patch("/api/v1/destinations/hook", {"mapping": {"id": "messageId"}}, format="json")
    assert response.status_code == 200, response.json()
    assert stored(broken)["mapping"] == {"id": "messageId"}


def test_the_list_filters_by_vendor_source_and_enabled(api, journey, destination) -> None:
    other = Source.objects.create(name="App", slug="app")
    off = Destination.objects.create(name="Off", slug="off", vendor="webhook", enabled=False, config={"url": "x"})
    off.sources.add(other)

    def slugs(query: str) -> list[str]:
        response = api.get(f"/api/v1/destinations{query}")
        assert response.status_code == 200
        return sorted(d["slug"] for d in response.json()["results"])

    assert slugs("") == ["off", "welcome-hook", "welcome-journey"]
    assert slugs("?vendor=webhook") == ["off", "welcome-hook"]
    assert slugs("?enabled=false") == ["off"]
    assert slugs("?source=website&vendor=webhook") == ["welcome-hook"]
    assert slugs("?source=app") == ["off"]
    assert api.get("/api/v1/destinations?enabled=nope").status_code == 400


def test_the_list_comes_in_pages_newest_first(api) -> None:
    for n in range(5):
        Destination.objects.create(name=f"D{n}", slug=f"d{n}", vendor="webhook", config={"url": "https://e.com"})
    first = api.get("/api/v1/destinations?limit=3").json()
    second = api.get(first["next"]).json()
    assert [d["slug"] for d in first["results"] + second["results"]] == ["d4", "d3", "d2", "d1", "d0"]
    assert second["next"] is None


def test_enabling_a_destination_sends_its_waiting_deliveries(api, destination) -> None:
    Destination.objects.filter(pk=destination.pk).update(enabled=False)
    resumed: list[list[int]] = []

    def record(sender, destination_ids, **kwargs):
        resumed.append(destination_ids)

    destinations_resumed.connect(record)
    try:
        api.patch("/api/v1/destinations/welcome-hook", {"name": "Still off"}, format="json")
        api.patch("/api/v1/destinations/welcome-hook", {"enabled": True}, format="json")
        api.patch("/api/v1/destinations/welcome-hook", {"name": "Running"}, format="json")
    finally:
        destinations_resumed.disconnect(record)
    assert resumed == [[destination.pk]]


def test_credentials_that_cannot_be_decrypted_say_so(api, journey) -> None:
    Destination.objects.filter(pk=journey.pk).update(credentials=Undecryptable("gAAAAA-not-a-token"))
    answer = api.get("/api/v1/destinations/welcome-journey").json()
    assert answer["credentials_set"] == {"client_id": CANNOT_DECRYPT, "client_secret": CANNOT_DECRYPT}
    body = {"credentials": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}}
    response = api.patch("/api/v1/destinations/welcome-journey", body, format="json")
    assert response.status_code == 200
    assert stored(journey)["credentials"] == body["credentials"]


def test_the_document_marks_the_credentials_write_only(anonymous_api) -> None:
    schemas = anonymous_api.get("/api/schema/?format=json").json()["components"]["schemas"]
    for request in ("DestinationRequest", "PatchedDestinationRequest"):
        assert schemas[request]["properties"]["credentials"]["writeOnly"] is True
    assert "credentials" not in schemas["Destination"]["properties"]
    assert schemas["Destination"]["properties"]["credentials_set"]["readOnly"] is True
