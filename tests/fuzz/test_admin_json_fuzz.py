"""The admin's JSON fields fuzzed, as a logged-in superuser types them and as the management API takes them:
a destination's config, mapping, filter and consent categories, a webhook source's config and signing secret, a
destination function's settings, and a payload to try on a source.

Each request is answered without a server error or a logged traceback. A form with errors (200) or an API
request refused (4xx) leaves the row as it was; a saved form (302) or an accepted API call leaves a row whose
page and API answer still render.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from django.forms.models import model_to_dict
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from integrations.models import ApiToken, Destination, Function, Source
from tests.fuzz.bodies import AWKWARD_TEXT, JSON, SPLICES, TEXT, splice
from tests.fuzz.conftest import CountingClient, fuzz
from tests.integrations.test_admin_destinations import form_data

pytestmark = [pytest.mark.django_db, pytest.mark.one_database]

DECLARED = [
    {"name": "region", "type": "string", "required": True},
    {"name": "batchLimit", "type": "number"},
    {"name": "verbose", "type": "boolean"},
    {"name": "tags", "type": "array"},
    {"name": "apiKey", "type": "string", "sensitive": True},
]
# Plausible shapes with odd values, for every field: the vendor's config, a filter, a mapping.
SHAPED = st.one_of(
    st.fixed_dictionaries({"url": st.one_of(AWKWARD_TEXT, JSON)}, optional={"method": JSON, "headers": JSON}),
    st.fixed_dictionaries({}, optional={"types": JSON, "events": JSON, "condition": st.one_of(AWKWARD_TEXT, JSON)}),
    st.dictionaries(AWKWARD_TEXT, st.one_of(AWKWARD_TEXT, JSON), max_size=3),
    st.fixed_dictionaries({"events": st.one_of(AWKWARD_TEXT, JSON), "mapping": JSON}),
)


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    """What a person might paste into a JSON field: JSON of any shape, JSON with a bad splice, or any text."""
    how = draw(st.sampled_from(["shaped", "shaped", "json", "spliced", "spliced", "text"]))
    if how == "text":
        return draw(st.one_of(TEXT, AWKWARD_TEXT))
    value = draw(SHAPED) if how != "json" else draw(JSON)
    text = orjson.dumps(value)
    if how == "spliced":
        text = splice(text if text.endswith(b"}") else b"{}", draw(SPLICES))
    return text.decode(errors="replace")


@pytest.fixture
def admin(django_user_model) -> CountingClient:
    user = django_user_model.objects.create_superuser("ada", "ada@example.com", "pw")
    client = CountingClient()
    client.force_login(user)
    client.token = ApiToken.issue(user, "fuzz")[1]
    return client


@pytest.fixture
def rows(db) -> dict[str, Any]:
    website = Source.objects.create(name="Website", slug="website", write_key="wk_fuzz_site")
    hook = Destination.objects.create(
        name="Welcome hook", slug="welcome-hook", vendor="webhook", config={"url": "https://hooks.example.com/in"}
    )
    hook.sources.add(website)
    Function.objects.create(
        name="Order hook", slug="order-hook", kind="destination", code="function onTrack(e) {}", settings=DECLARED
    )
    orders = Destination.objects.create(
        name="Orders", slug="orders", vendor="function", config={"function": "order-hook", "settings": {"region": "eu"}}
    )
    generic = Source.objects.create(name="Any", slug="any", kind="generic", write_key="wk_fuzz_any")
    return {"hook": hook, "orders": orders, "generic": generic, "website": website}


def snapshot(row: Any) -> dict[str, Any]:
    row = type(row).objects.get(pk=row.pk)
    return {**model_to_dict(row), "updated_at": getattr(row, "updated_at", None)}


def restore(row: Any, values: dict[str, Any]) -> None:
    """The row's JSON fields as they were, so each example starts from the same rows."""
    fields = ("config", "settings", "mapping", "filter", "consent_categories", "credentials")
    type(row).objects.filter(pk=row.pk).update(**{k: v for k, v in values.items() if k in fields})


@st.composite
def admin_posts(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    """(which row, form, posted data) for one change form or the payload tester."""
    form = draw(st.sampled_from(["destination", "destination", "function settings", "source", "try payload"]))
    if form == "destination":
        field = draw(st.sampled_from(["config", "mapping", "filter", "consent_categories"]))
        changes = {field: draw(json_texts()) if field != "consent_categories" else draw(st.one_of(TEXT, AWKWARD_TEXT))}
        if draw(st.booleans()):
            changes[draw(st.sampled_from(["config", "mapping", "filter"]))] = draw(json_texts())
        return "hook", form, changes
    if form == "function settings":
        prefix = "function_settings__order-hook__"
        name = draw(st.sampled_from(["region", "batchLimit", "verbose", "tags", "secret__apiKey"]))
        return "orders", form, {f"{prefix}{name}": draw(st.one_of(AWKWARD_TEXT, json_texts()))}
    if form == "source":
        return "generic", form, {"config": draw(json_texts()), "settings__generic__signing_secret": draw(AWKWARD_TEXT)}
    return "generic", form, {"payload": draw(json_texts())}


def posted(form: str, row: Any, changes: dict[str, Any]) -> dict[str, Any]:
    """The whole form as a browser posts it, with `changes`."""
    if form == "destination":
        return form_data(row, **changes)
    if form == "function settings":
        base = form_data(row, config="", function="order-hook", **{"function_settings__order-hook__region": "eu"})
        return {**base, **changes}
    if form == "source":
        return {
            "name": row.name,
            "slug": row.slug,
            "kind": row.kind,
            "write_key": row.write_key,
            "enabled": "on",
            **changes,
        }
    return changes


def no_surrogates(data: dict[str, Any]) -> dict[str, Any]:
    """What a browser can post: text is UTF-8, so a lone surrogate never reaches the server as one."""
    return {k: v.encode("utf-8", "replace").decode() if isinstance(v, str) else v for k, v in data.items()}


@fuzz(100)
@given(post=admin_posts())
def test_the_admin_json_fields_answer_every_input(admin, log_watch, rows, post):
    name, form, changes = post
    row = rows[name]
    before = snapshot(row)
    model = row._meta.model_name
    url = (
        reverse("admin:integrations_source_try", args=[row.pk])
        if form == "try payload"
        else reverse(f"admin:integrations_{model}_change", args=[row.pk])
    )

    response = admin.post(url, no_surrogates(posted(form, row, changes)))

    log_watch.check()
    assert response.status_code in (200, 302), response.content[:1000]
    if response.status_code == 200 and form != "try payload":
        assert snapshot(row) == before  # a form with errors changes nothing
    if response.status_code == 302:
        page = admin.get(reverse(f"admin:integrations_{model}_change", args=[row.pk]))
        assert page.status_code == 200
        log_watch.check()
        restore(row, before)


@st.composite
def api_bodies(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(method, path, raw JSON body) for the management API's destinations and sources."""
    target = draw(st.sampled_from(["destination", "source", "new destination"]))
    if target == "source":
        fields = {"config": draw(SHAPED), "settings": draw(st.one_of(SHAPED, JSON))}
        path, method = "/api/v1/sources/any", "PATCH"
    else:
        name = draw(st.sampled_from(["config", "mapping", "filter", "consent_categories", "credentials"]))
        fields = {name: draw(st.one_of(SHAPED, JSON))}
        path, method = "/api/v1/destinations/welcome-hook", "PATCH"
        if target == "new destination":
            fields = {"name": "New", "slug": "new-hook", "vendor": "webhook", "sources": ["website"], **fields}
            path, method = "/api/v1/destinations", "POST"
    body = orjson.dumps(fields)
    if draw(st.booleans()):
        body = splice(body, draw(SPLICES))
    return method, path, body


@fuzz(250)
@given(call=api_bodies())
def test_the_management_api_json_fields_answer_every_input(admin, log_watch, rows, call):
    method, path, body = call
    before = {key: snapshot(rows[key]) for key in ("hook", "generic")}

    response = admin.generic(
        method, path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {admin.token}"
    )

    log_watch.check()
    assert response.status_code < 500, response.content[:1000]
    if response.status_code >= 400:
        assert {key: snapshot(rows[key]) for key in before} == before
        assert not Destination.objects.filter(slug="new-hook").exists()
        return
    shown = admin.get(
        path if method == "PATCH" else "/api/v1/destinations/new-hook", HTTP_AUTHORIZATION=f"Bearer {admin.token}"
    )
    assert shown.status_code == 200
    json.loads(shown.content)
    Destination.objects.filter(slug="new-hook").delete()
    for key, values in before.items():
        restore(rows[key], values)
