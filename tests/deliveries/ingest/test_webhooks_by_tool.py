"""Every tool's fixtures through the real endpoint, signed the tool's own way: each request is accepted whole,
its events stored and routed, and the same request sent again (the tool retrying) stores nothing new."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client

from deliveries.models import Delivery, Event
from integrations.models import Destination, Function, Source
from integrations.webhooks import FUNCTIONS
from tests.integrations.webhooks.test_generic import CALENDLY, GITHUB_PUSH, GITHUB_STAR, TYPEFORM

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SECRET = "whsec_by_tool_0123456789abcdef"


def customerio(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"HTTP_X_CIO_TIMESTAMP": stamp, "HTTP_X_CIO_SIGNATURE": digest}


def stripe(body: bytes) -> dict[str, str]:
    stamp = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"HTTP_STRIPE_SIGNATURE": f"t={stamp},v1={digest}"}


def zendesk(body: bytes) -> dict[str, str]:
    stamp = "2025-01-08T16:45:21Z"
    digest = base64.b64encode(hmac.new(SECRET.encode(), stamp.encode() + body, hashlib.sha256).digest()).decode()
    return {
        "HTTP_X_ZENDESK_WEBHOOK_SIGNATURE": digest,
        "HTTP_X_ZENDESK_WEBHOOK_SIGNATURE_TIMESTAMP": stamp,
        "HTTP_X_ZENDESK_WEBHOOK_INVOCATION_ID": "inv-" + hashlib.sha1(body).hexdigest()[:12],
    }


def generic(body: bytes) -> dict[str, str]:
    return {"HTTP_X_SIGNATURE": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}


SIGNERS: dict[str, Callable[[bytes], dict[str, str]]] = {
    "customerio": customerio,
    "stripe": stripe,
    "zendesk": zendesk,
    "generic": generic,
    "function": generic,  # a JavaScript source verifies a plain HMAC header too
}
EXAMPLES = Path(__file__).resolve().parents[3] / "integrations" / "functions" / "examples"
# A generic source is set up for its tool: the mappings of tests/integrations/webhooks/test_generic.py, signed
# here with one plain HMAC header.
SIGNED = {
    "signature_header": "X-Signature",
    "signature_prefix": "",
    "signature_encoding": "hex",
    "signed_content": "body",
}
GENERIC = {
    "calendly_invitee_created": CALENDLY,
    "events_list": {"events": "events"},
    "github_push": GITHUB_PUSH,
    "github_star": GITHUB_STAR,
    "typeform_form_response": TYPEFORM,
}
CASES = [(kind, path) for kind in SIGNERS for path in sorted((FIXTURES / kind).glob("*.json"))]


def test_every_source_kind_with_a_function_has_fixtures_here():
    assert sorted(SIGNERS) == sorted(FUNCTIONS)


@pytest.mark.parametrize(("kind", "path"), CASES, ids=[f"{k}-{p.stem}" for k, p in CASES])
def test_a_signed_fixture_is_stored_once_and_routed(db, kind: str, path: Path):
    source = Source.objects.create(
        name=kind, slug=kind, kind=kind, write_key=f"wk_{kind}", settings={"signing_secret": SECRET}
    )
    if kind == "generic":
        source.config = {**GENERIC[path.stem], **SIGNED}
        source.save()
    if kind == "function":  # the example source function named by the fixture's prefix
        example = path.name.split(".")[0]
        Function.objects.create(
            name=example, slug=example, kind="source", code=(EXAMPLES / f"{example}.js").read_text(encoding="utf-8")
        )
        source.config = {"function": example, "signature_header": "X-Signature"}
        source.full_clean()
        source.save()
    hook = Destination.objects.create(name="Hook", slug="hook", vendor="webhook", config={"url": "https://x.test/"})
    hook.sources.add(source)
    body = path.read_bytes()

    first = Client().post(
        f"/v1/webhooks/{source.write_key}", body, content_type="application/json", **SIGNERS[kind](body)
    )
    again = Client().post(
        f"/v1/webhooks/{source.write_key}", body, content_type="application/json", **SIGNERS[kind](body)
    )

    assert first.status_code == 200, first.content
    stored = first.json()["events"]
    assert stored >= 1
    assert "rejected" not in first.json()
    assert again.status_code == 200
    assert (again.json()["events"], again.json().get("duplicates")) == (0, stored)
    assert Event.objects.filter(source=source, status="accepted").count() == stored
    assert Delivery.objects.filter(destination=hook).count() == stored
