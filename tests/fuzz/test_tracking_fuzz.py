"""The Tracking API fuzzed: generated requests to every /v1/ endpoint, valid events mixed with every kind of bad
input, each checked for what it stored.

A request refused as a whole (4xx) stores no accepted event and no delivery; the design records it for the
Debugger as one rejected event when the source is known (the key in the Authorization header), none when it is
not (a bad key, a key in a body that cannot be read) or the media type is not JSON (415). A batch answered 400
because every item was refused records one rejected event per item. An accepted request stores one event per
item it did not refuse or count as a duplicate, each with one delivery row (the one destination, disabled, so
nothing is sent), and an unmangled event's properties as sent (NUL characters as U+FFFD).
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deliveries.ingest.parsing import NUL_ESCAPE
from deliveries.models import Event
from integrations.models import Destination, Source
from tests.conftest import basic_auth
from tests.fuzz.bodies import (
    AWKWARD_TEXT,
    CONTENT_TYPES,
    ENCODINGS,
    JSON,
    NUMBERS,
    OBJECTS,
    TEXT,
    encode,
    gzip_bomb,
    header_value,
    mangled,
    strip_nul,
)
from tests.fuzz.conftest import fuzz, last_ids, written_since

pytestmark = [pytest.mark.django_db, pytest.mark.one_database]

WRITE_KEY = "wk_fuzz_website"
SINGLE = ("identify", "track", "page", "screen", "group", "alias")
PATHS = {**{e: e for e in SINGLE}, "batch": "batch", "import": "import", "t": "track", "b": "batch", "i": "identify"}

IDS = st.one_of(
    st.just("user-1"), st.uuids().map(str), AWKWARD_TEXT, NUMBERS, st.none(), st.booleans(), OBJECTS, st.lists(TEXT)
)
TIMES = st.one_of(
    st.none(),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["2024-02-30T00:00:00Z", "yesterday", "", "2024-01-01T25:00:00Z", "0001-01-01T00:00+05:00"]),
    NUMBERS,
    OBJECTS,
)
MESSAGE_IDS = st.one_of(
    st.none(), st.uuids().map(str), st.sampled_from(["fuzz-1", "fuzz-2", ""]), AWKWARD_TEXT, NUMBERS
)
# A body the hub could not read: with the write key inside, the source is not known either, so nothing is recorded.
UNREADABLE = ("invalid_json", "too_deep", "payload_too_large", "invalid_gzip")
TYPES = st.one_of(st.sampled_from(SINGLE), st.sampled_from(["Track", "", "batch", "event"]), st.none(), NUMBERS)


@st.composite
def events(draw: st.DrawFn, kind: Any = None) -> dict[str, Any]:
    """An event of `kind` (or a drawn type): mostly well formed, any field possibly of the wrong type."""
    kind = draw(TYPES) if kind is None else kind
    event: dict[str, Any] = {"type": kind}
    good = draw(st.booleans())
    event["userId"] = "user-1" if good else draw(IDS)
    if draw(st.booleans()):
        event["anonymousId"] = draw(IDS)
    if kind == "alias" or (not good and draw(st.booleans())):
        event["previousId"] = "anon-1" if good else draw(IDS)
    if kind == "group" or (not good and draw(st.booleans())):
        event["groupId"] = "group-1" if good else draw(IDS)
    if kind == "track" or (not good and draw(st.booleans())):
        event["event"] = "Order Completed" if good else draw(st.one_of(AWKWARD_TEXT, JSON))
    for name in ("properties", "traits", "context", "integrations"):
        if draw(st.booleans()):
            event[name] = draw(OBJECTS) if good else draw(JSON)
    for name in ("timestamp", "sentAt", "originalTimestamp"):
        if draw(st.integers(0, 3)) == 0:
            event[name] = draw(TIMES)
    message_id = draw(MESSAGE_IDS)
    if message_id is not None:
        event["messageId"] = message_id
    return event


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """One request: its path, body, headers, and what was sent as Python values (None when it is mangled)."""
    path = draw(st.sampled_from(sorted(PATHS)))
    endpoint = PATHS[path]
    if endpoint in ("batch", "import"):
        size = draw(st.sampled_from([0, 1, 2, 3, 5, 10] * 6 + [40, 2500, 2501]))
        item = events()
        items: Any = draw(st.lists(item, min_size=min(size, 10), max_size=min(size, 10)))
        if size > 10:  # a huge batch: one drawn event, repeated with fresh messageIds
            template = items[0] if items else {"type": "track", "userId": "u", "event": "E"}
            items = [{**template, "messageId": f"{template.get('messageId')}-{n}"} for n in range(size)]
        body: dict[str, Any] = {"batch": items if draw(st.integers(0, 9)) else draw(JSON)}
        for name in ("context", "integrations"):
            if draw(st.booleans()):
                body[name] = draw(OBJECTS) if draw(st.booleans()) else draw(JSON)
        if draw(st.booleans()):
            body["sentAt"] = draw(TIMES)
    else:
        body = draw(events(endpoint if draw(st.integers(0, 3)) else draw(TYPES)))
        if not draw(st.integers(0, 5)):
            body.pop("type")
    auth = draw(st.sampled_from(["header"] * 5 + ["body", "none", "bad header", "unknown", "disabled", "garbage"]))
    headers: dict[str, str] = {}
    if auth == "header":
        headers["HTTP_AUTHORIZATION"] = basic_auth(WRITE_KEY, colon=draw(st.booleans()))
    elif auth == "body":
        body["writeKey"] = WRITE_KEY
    elif auth == "bad header":
        headers["HTTP_AUTHORIZATION"] = header_value(
            draw(st.sampled_from(["Basic", "Basic !!", "Bearer x", "Basic é"]))
        )
    elif auth in ("unknown", "disabled"):
        headers["HTTP_AUTHORIZATION"] = basic_auth("wk_nobody" if auth == "unknown" else "wk_fuzz_disabled")
    elif auth == "garbage":
        headers["HTTP_AUTHORIZATION"] = header_value(draw(TEXT))
    raw, intact = draw(mangled(orjson.dumps(body)))
    if not draw(st.integers(0, 30)):
        raw, intact = b"", False
    sent, encoding = encode(raw, draw(ENCODINGS))
    if encoding is not None:
        headers["HTTP_CONTENT_ENCODING"] = header_value(encoding)
    return {
        "path": f"/v1/{path}",
        "endpoint": endpoint,
        "body": sent,
        "content_type": draw(CONTENT_TYPES),
        "headers": headers,
        "sent": body if intact else None,
        "raw": raw,
        "auth": auth,
    }


@pytest.fixture
def website(db) -> Source:
    source = Source.objects.create(name="Website", slug="website", write_key=WRITE_KEY)
    Source.objects.create(name="Old site", slug="old-site", write_key="wk_fuzz_disabled", enabled=False)
    # Disabled: routing still writes each accepted event's delivery row (filtered, with why), and nothing is sent.
    hook = Destination.objects.create(
        name="Hook", slug="hook", vendor="webhook", enabled=False, config={"url": "https://hooks.example.com/in"}
    )
    hook.sources.add(source)
    return source


def server_view(raw: bytes) -> Any:
    """The body as JSON the way the hub reads it (NUL escapes aside), for counting a batch's items."""
    return orjson.loads(NUL_ESCAPE.sub(lambda m: m.group()[:-6] + b"\\ufffd", raw))


def check(request: dict[str, Any], response: Any, before: tuple[int, int], website: Source) -> None:
    accepted, rejected, deliveries = written_since(before)
    status = response.status_code
    assert status < 500, response.content[:500]
    answer = response.json()
    if status >= 400:
        assert (accepted, deliveries) == (0, 0), answer
        if "rejected" in answer:  # a batch whose every item was refused
            assert rejected == len(answer["rejected"]) == len(server_view(request["raw"])["batch"]), answer
        else:
            known = request["auth"] == "header" or (request["auth"] == "body" and answer["code"] not in UNREADABLE)
            recorded = known and status not in (401, 405, 415)
            assert rejected == (1 if recorded else 0), answer
        return
    assert status == 200, answer
    refused = answer.get("rejected", [])
    assert rejected == len(refused), answer
    assert deliveries == accepted, answer
    sent = request["sent"]
    if request["endpoint"] in ("batch", "import"):
        items = server_view(request["raw"])["batch"]
        assert accepted == len(items) - len(refused) - answer.get("duplicates", 0), answer
        if refused:
            assert answer["accepted"] == accepted
        indexes = {r["index"] for r in refused}
        kept = [item for index, item in enumerate(sent["batch"] if sent else []) if index not in indexes]
    else:
        assert accepted == (0 if answer.get("duplicate") else 1), answer
        kept = [sent] if sent else []
    seen = set()
    for item in kept:  # an event sent intact and stored by this request is stored as it was sent
        message_id = item.get("messageId")
        if not isinstance(message_id, str) or not message_id or message_id in seen:
            continue
        seen.add(message_id)
        stored = Event.objects.get(source=website, message_id=strip_nul(message_id), status="accepted")
        if stored.pk > before[0] and isinstance(item.get("properties"), dict):
            assert stored.payload["properties"] == strip_nul(item["properties"])


@fuzz(700)
@given(req=requests())
def test_the_tracking_api_answers_every_request_and_stores_what_it_says(fuzz_client, log_watch, website, req):
    before = last_ids()
    response = fuzz_client.generic("POST", req["path"], req["body"], content_type=req["content_type"], **req["headers"])
    log_watch.check()
    check(req, response, before, website)


def test_a_gzip_bomb_is_refused_without_inflating_it(fuzz_client, website):
    """480 MB of zeros in a 480 KB gzip: refused with a 413, never more than a few MB held while reading it."""
    bomb = gzip_bomb()
    assert len(bomb) < 500 * 1024
    tracemalloc.start()
    try:
        response = fuzz_client.post(
            "/v1/batch",
            bomb,
            content_type="application/json",
            HTTP_CONTENT_ENCODING="gzip",
            HTTP_AUTHORIZATION=basic_auth(WRITE_KEY),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert peak < len(bomb) * 4 + 4 * 1024 * 1024
    assert Event.objects.filter(status="accepted").count() == 0
