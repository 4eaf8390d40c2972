"""The webhook endpoint fuzzed: each source kind (Customer.io, Stripe, Zendesk, any JSON, a JavaScript source
function) gets its tool's real payloads with parts replaced by generated values, broken on the wire, or bytes
that are not JSON at all; mostly signed the tool's way, so the bad input reaches the source function.

A request refused as a whole (4xx) stores no accepted event and no delivery, and one rejected event with the
reason (none for a write key that names no webhook source: there is no source to record it on). When every
event it made was refused one by one (400 invalid_events), each is a rejected event. An accepted request stores
the events it counts, each with one delivery row, and a rejected event for each it refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.models import Destination, Function, Source
from tests.deliveries.ingest.test_webhooks_by_tool import EXAMPLES, GENERIC, SECRET, SIGNED, SIGNERS
from tests.fuzz.bodies import AWKWARD_TEXT, BAD_BYTES, CONTENT_TYPES, JSON, header_value, mangled
from tests.fuzz.conftest import fuzz, last_ids, written_since

pytestmark = [pytest.mark.django_db, pytest.mark.one_database]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PAYLOADS = {
    kind: [orjson.loads(path.read_bytes()) for path in sorted((FIXTURES / kind).glob("*.json"))]
    for kind in ("customerio", "stripe", "zendesk", "generic", "function")
}
KINDS = sorted(PAYLOADS)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document, the document itself first."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of `document` with the value at `path` replaced."""
    if not path:
        return value
    copy = document.copy()
    copy[path[0]] = replaced(document[path[0]], path[1:], value)
    return copy


@st.composite
def payloads(draw: st.DrawFn, kind: str) -> bytes:
    """A real payload of this kind's tool with up to three parts replaced by generated JSON, as bytes (perhaps
    broken on the wire), or other bytes altogether."""
    how = draw(st.sampled_from(["real", "real", "real", "real", "json", "bytes"]))
    if how == "json":
        return orjson.dumps(draw(JSON))
    if how == "bytes":
        return draw(st.one_of(st.binary(max_size=200), BAD_BYTES, st.just(b"")))
    document = draw(st.sampled_from(PAYLOADS[kind]))
    for _ in range(draw(st.integers(0, 3))):
        document = replaced(document, draw(st.sampled_from(paths(document))), draw(st.one_of(JSON, AWKWARD_TEXT)))
    body, _ = draw(mangled(orjson.dumps(document)))
    return body


@st.composite
def webhook_requests(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    body = draw(payloads(kind))
    signing = draw(st.sampled_from(["signed"] * 6 + ["unsigned source", "not signed", "badly signed"]))
    key = f"wk_fuzz_{kind}" if signing != "unsigned source" else f"wk_fuzz_{kind}_open"
    headers = SIGNERS[kind](body) if signing == "signed" else {}
    if signing == "badly signed":
        headers = {name: header_value(draw(AWKWARD_TEXT)) for name in SIGNERS[kind](body)}
    if draw(st.integers(0, 20)) == 0:
        key = draw(st.sampled_from(["wk_nobody", "wk_fuzz_http", "wk_fuzz_off"]))
    return {"path": f"/v1/webhooks/{key}", "body": body, "content_type": draw(CONTENT_TYPES), "headers": headers}


def webhook_source(kind: str, key: str, secret: bool) -> Source:
    source = Source.objects.create(
        name=key,
        slug=key.replace("_", "-"),
        kind=kind,
        write_key=key,
        settings={"signing_secret": SECRET} if secret else {},
    )
    if kind == "generic":  # the mapping of a list of events, the likeliest to meet odd values
        source.config = {**GENERIC["events_list"], **(SIGNED if secret else {})}
    if kind == "function":
        source.config = {"function": "customerio_router", **({"signature_header": "X-Signature"} if secret else {})}
    source.full_clean()
    source.save()
    return source


@pytest.fixture
def sources(db) -> list[Source]:
    for example in ("customerio_router", "stripe_events"):
        code = (EXAMPLES / f"{example}.js").read_text(encoding="utf-8")
        Function.objects.create(name=example, slug=example, kind="source", code=code)
    made = [webhook_source(kind, f"wk_fuzz_{kind}{suffix}", not suffix) for kind in KINDS for suffix in ("", "_open")]
    Source.objects.create(name="Site", slug="site", write_key="wk_fuzz_http")
    Source.objects.create(name="Off", slug="off", kind="stripe", write_key="wk_fuzz_off", enabled=False)
    hook = Destination.objects.create(
        name="Hook", slug="hook", vendor="webhook", enabled=False, config={"url": "https://hooks.example.com/in"}
    )
    hook.sources.add(*made)
    return made


@fuzz(1200)
@given(req=webhook_requests())
def test_the_webhook_endpoint_answers_every_request_and_stores_what_it_says(fuzz_client, log_watch, sources, req):
    before = last_ids()
    response = fuzz_client.generic("POST", req["path"], req["body"], content_type=req["content_type"], **req["headers"])
    log_watch.check()
    accepted, rejected, deliveries = written_since(before)

    assert response.status_code < 500, response.content[:500]
    answer = getattr(response, "cdphub_result", None) or response.json()
    if response.status_code >= 400:
        assert (accepted, deliveries) == (0, 0), answer
        if answer.get("code") == "invalid_events":  # every event of the request refused alone
            assert rejected == len(answer["rejected"]) > 0, answer
        else:
            no_source = answer["code"] in ("invalid_write_key", "source_disabled", "not_a_webhook_source")
            assert rejected == (0 if no_source else 1), answer
    else:
        assert response.status_code == 200, answer
        assert accepted == answer["events"] == deliveries, answer
        assert rejected == len(answer.get("rejected", [])), answer
