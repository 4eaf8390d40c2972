"""/api/v1/sources: CRUD by slug, filters and pages, the model's checks as 400s per field, the write key and signing
secret write-only and an administrator's to set, and each caller's rights."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import Permission

from integrations.crypto import CANNOT_DECRYPT, Undecryptable
from integrations.models import ApiToken, Source
from tests.deliveries.api.conftest import client_with

pytestmark = pytest.mark.django_db

SECRET = "whsec_sourceApiSecret_5e1f2a"
WRITE_KEY = "wk_sourceApiKey_9d8c7b6a"
EXPECTED = {
    "list": {"admin": 200, "marketer": 200, "anonymous": 401, "revoked": 401},
    "retrieve": {"admin": 200, "marketer": 200, "anonymous": 401, "revoked": 401},
    "create": {"admin": 201, "marketer": 403, "anonymous": 401, "revoked": 401},
    "update": {"admin": 200, "marketer": 403, "anonymous": 401, "revoked": 401},
    "destroy": {"admin": 204, "marketer": 403, "anonymous": 401, "revoked": 401},
}


@pytest.fixture
def stripe_source() -> Source:
    return Source.objects.create(
        name="Stripe", slug="stripe", kind="stripe", write_key=WRITE_KEY, settings={"signing_secret": SECRET}
    )


def test_each_caller_gets_what_its_rights_allow(caller, source) -> None:
    who, client = caller
    calls = {
        "list": lambda: client.get("/api/v1/sources"),
        "retrieve": lambda: client.get("/api/v1/sources/website"),
        "create": lambda: client.post("/api/v1/sources", {"name": "App", "slug": "app"}, format="json"),
        "update": lambda: client.patch("/api/v1/sources/website", {"enabled": False}, format="json"),
        "destroy": lambda: client.delete("/api/v1/sources/website"),
    }
    got = {action: call().status_code for action, call in calls.items()}
    assert got == {action: statuses[who] for action, statuses in EXPECTED.items()}
    assert Source.objects.filter(slug="app").exists() == (who == "admin")


def test_an_administrator_creates_a_webhook_source_whose_secrets_are_never_answered(api, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"name": "Stripe", "slug": "stripe", "kind": "stripe", "write_key": WRITE_KEY}
    response = api.post("/api/v1/sources", {**body, "settings": {"signing_secret": f" {SECRET}\n"}}, format="json")

    assert response.status_code == 201, response.json()
    answer = response.json()
    assert answer["settings_set"] == {"signing_secret": "set"}
    assert "settings" not in answer
    assert answer["write_key"] == WRITE_KEY  # the create answer, once: the SDKs need it
    for text in (response.content.decode(), caplog.text):
        assert SECRET not in text
    assert WRITE_KEY not in caplog.text
    stored = Source.objects.get(slug="stripe")
    assert stored.settings == {"signing_secret": SECRET}  # stripped, as the admin strips a pasted secret
    assert stored.write_key == WRITE_KEY


def test_the_write_key_is_generated_when_left_out_and_answered_on_create_only(api, marketer_api) -> None:
    response = api.post("/api/v1/sources", {"name": "App", "slug": "app"}, format="json")
    assert response.status_code == 201
    key = Source.objects.get(slug="app").write_key
    assert key.startswith("wk_")
    assert response.json()["write_key"] == key
    for client in (api, marketer_api):
        for url in ("/api/v1/sources", "/api/v1/sources/app"):
            assert key not in client.get(url).content.decode()


def test_a_marketer_reads_sources_without_knowing_which_secrets_are_stored(marketer_api, stripe_source) -> None:
    answer = marketer_api.get("/api/v1/sources/stripe").json()
    assert answer["settings_set"] is None
    assert answer["kind"] == "stripe"
    assert "write_key" not in answer


def test_a_settings_key_left_out_is_kept_and_null_removes_it(api, stripe_source) -> None:
    assert api.patch("/api/v1/sources/stripe", {"enabled": False}, format="json").status_code == 200
    stripe_source.refresh_from_db()
    assert stripe_source.settings == {"signing_secret": SECRET}
    assert not stripe_source.enabled

    response = api.patch("/api/v1/sources/stripe", {"settings": {"signing_secret": None}}, format="json")
    assert response.json()["settings_set"] == {}
    stripe_source.refresh_from_db()
    assert stripe_source.settings == {}


def test_the_write_key_cannot_be_changed(api, stripe_source) -> None:
    response = api.patch("/api/v1/sources/stripe", {"write_key": "wk_another_one_entirely"}, format="json")
    assert response.status_code == 400
    assert "Cannot be changed" in response.json()["write_key"][0]
    stripe_source.refresh_from_db()
    assert stripe_source.write_key == WRITE_KEY
    # The same key again is no change.
    assert api.patch("/api/v1/sources/stripe", {"write_key": WRITE_KEY}, format="json").status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"bogus": 1}, "bogus", "Unknown field: use config, enabled, kind, name, settings, slug, write_key."),
        ({"created_at": "2025-01-01T00:00:00Z"}, "created_at", "Read-only: leave it out."),
        ({"settings_set": {}}, "settings_set", "Read-only: leave it out."),
        ({"enabled": "yes"}, "enabled", "Must be true or false."),
        ({"name": 2024}, "name", "Must be a string."),
        ({"kind": "carrier-pigeon"}, "kind", '"carrier-pigeon" is not a valid choice.'),
        ({"slug": "not a slug"}, "slug", None),
        ({"settings": "whsec_x"}, "settings", None),
        ({"kind": "http", "settings": {"signing_secret": "whsec_x"}}, "settings", "takes no settings"),
        ({"kind": "stripe", "settings": {"signing_secret": "sk_live_123"}}, "settings", "Stripe API key"),
        ({"kind": "stripe", "settings": {"secret": "whsec_x"}}, "settings", "settings.secret: unknown setting"),
        ({"kind": "stripe", "config": {"tolerance": -1}}, "config", "config.tolerance: must be 0 or more"),
    ],
)
def test_a_bad_source_is_a_400_under_its_field_and_nothing_is_saved(api, body, field, message) -> None:
    response = api.post("/api/v1/sources", {"name": "New", "slug": "new", **body}, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field]
    if message:
        assert message in " ".join(errors[field])
    assert not Source.objects.filter(name="New").exists()


def test_a_taken_slug_or_write_key_is_refused(api, stripe_source) -> None:
    response = api.post("/api/v1/sources", {"name": "Again", "slug": "stripe"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"slug": ["Source with this Slug already exists."]}
    response = api.post("/api/v1/sources", {"name": "Again", "slug": "again", "write_key": WRITE_KEY}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["write_key"]
    assert WRITE_KEY not in response.content.decode()


def test_a_body_that_is_not_an_object_is_a_400(api) -> None:
    response = api.post("/api/v1/sources", ["website"], format="json")
    assert response.status_code == 400


def test_the_list_filters_by_kind_and_enabled(api, source, stripe_source) -> None:
    Source.objects.create(name="Off", slug="off", enabled=False)

    def slugs(query: str) -> list[str]:
        response = api.get(f"/api/v1/sources{query}")
        assert response.status_code == 200
        return sorted(s["slug"] for s in response.json()["results"])

    assert slugs("") == ["off", "stripe", "website"]
    assert slugs("?kind=stripe") == ["stripe"]
    assert slugs("?enabled=false") == ["off"]
    assert slugs("?enabled=true&kind=http") == ["website"]
    response = api.get("/api/v1/sources?enabled=maybe")
    assert response.status_code == 400
    assert response.json() == {"enabled": ["Use true or false."]}


def test_the_list_comes_in_pages_newest_first(api) -> None:
    for n in range(5):
        Source.objects.create(name=f"S{n}", slug=f"s{n}")
    first = api.get("/api/v1/sources?limit=2").json()
    assert [s["slug"] for s in first["results"]] == ["s4", "s3"]
    second = api.get(first["next"]).json()
    third = api.get(second["next"]).json()
    assert [s["slug"] for s in second["results"] + third["results"]] == ["s2", "s1", "s0"]
    assert third["next"] is None


def test_deleting_a_source_by_slug(api, source) -> None:
    assert api.delete("/api/v1/sources/website").status_code == 204
    assert not Source.objects.exists()
    assert api.get("/api/v1/sources/website").status_code == 404


def test_without_the_credentials_permission_secrets_are_refused_and_nothing_changes(
    django_user_model, stripe_source
) -> None:
    """A user who may change sources but not credentials (as in the admin: the secret inputs are read-only)."""
    user = django_user_model.objects.create_user("sam", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_source", "change_source", "add_source"]))
    client = client_with(ApiToken.issue(user, "sam's script")[1])

    for body in ({"settings": {"signing_secret": "whsec_mine"}}, {"write_key": "wk_mine_mine_mine", "enabled": False}):
        response = client.patch("/api/v1/sources/stripe", body, format="json")
        assert response.status_code == 403
        assert "Only an administrator" in response.json()["detail"]
    stripe_source.refresh_from_db()
    assert (stripe_source.settings, stripe_source.write_key, stripe_source.enabled) == (
        {"signing_secret": SECRET},
        WRITE_KEY,
        True,
    )
    assert client.patch("/api/v1/sources/stripe", {"name": "Stripe live"}, format="json").status_code == 200
    stripe_source.refresh_from_db()
    assert stripe_source.settings == {"signing_secret": SECRET}


def test_settings_that_cannot_be_decrypted_say_so_without_breaking_the_list(api, stripe_source) -> None:
    Source.objects.filter(pk=stripe_source.pk).update(settings=Undecryptable("gAAAAA-not-a-token"))
    response = api.get("/api/v1/sources/stripe")
    assert response.status_code == 200
    assert response.json()["settings_set"] == {"signing_secret": CANNOT_DECRYPT}
    # A change that gives the secret again repairs it.
    response = api.patch("/api/v1/sources/stripe", {"settings": {"signing_secret": SECRET}}, format="json")
    assert response.status_code == 200
    assert response.json()["settings_set"] == {"signing_secret": "set"}


def test_the_document_marks_the_write_key_and_settings_write_only(anonymous_api) -> None:
    schemas = anonymous_api.get("/api/schema/?format=json").json()["components"]["schemas"]
    for request in ("SourceRequest", "PatchedSourceRequest"):
        for name in ("settings", "write_key"):
            assert schemas[request]["properties"][name]["writeOnly"] is True
    assert not {"settings", "write_key"} & set(schemas["Source"]["properties"])
    assert schemas["Source"]["properties"]["settings_set"]["readOnly"] is True


def test_a_put_needs_name_and_slug_and_keeps_what_it_leaves_out(api, stripe_source) -> None:
    Source.objects.filter(pk=stripe_source.pk).update(enabled=False, config={"tolerance": 60})
    assert api.put("/api/v1/sources/stripe", {"name": "Stripe"}, format="json").json() == {
        "slug": ["This field is required."]
    }
    response = api.put("/api/v1/sources/stripe", {"name": "Stripe live", "slug": "stripe"}, format="json")
    assert response.status_code == 200
    stripe_source.refresh_from_db()
    assert (stripe_source.name, stripe_source.enabled, stripe_source.config) == (
        "Stripe live",
        False,
        {"tolerance": 60},
    )
    assert stripe_source.settings == {"signing_secret": SECRET}
