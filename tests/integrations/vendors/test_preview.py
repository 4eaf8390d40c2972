"""Vendor.preview: the request(s) a vendor would make for one event, built by its own code and never sent, with
every credential masked, and the vendor's own error when the event could not be sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from integrations.crypto import MASK
from integrations.vendors.contract import DeliveryError
from integrations.vendors.marketo.vendor import Marketo
from integrations.vendors.segment import Segment
from integrations.vendors.sfmc.data_extension import SfmcDataExtension
from integrations.vendors.sfmc.journey import SfmcJourney
from integrations.vendors.webhook import Webhook

SUBDOMAIN = "mc563885gzs27c5t9-63k636ttgm"
SFMC_CREDENTIALS = {"client_id": "cid-4k2j9x7q1w0pz8m3n5b6v", "client_secret": "s3cr3t-Qm9vbi1sYW5kaW5nLTE5Njk"}
MARKETO_CREDENTIALS = {"client_id": "0f3b2c1d-5e6f-4a7b", "client_secret": "Zq8+xT/4mN=r2LkP9wV7"}
SIGNING_SECRET = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLXByZXZpZXc="
API_KEY = "key_live_6b1f0e9d2a"
WRITE_KEY = "segment-write-key-0123456789"
ACTIVITIES = {
    "Order Completed": {
        "activity_type_id": 100001,
        "primary_attribute": "properties.order_id",
        "attributes": {"total": "properties.total", "coupon": "properties.coupon"},
    }
}


def identify(**extra: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": "user-42",
        "traits": {"email": "Ada@example.com", "firstName": "Ada", "plan": "pro"},
        "messageId": "msg-preview-1",
        "timestamp": "2024-05-01T10:00:00.000Z",
        "receivedAt": "2024-05-01T10:00:01.000Z",
        **extra,
    }


def track(**extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-42",
        "properties": {"order_id": "A-1", "total": 49.5, "email": "ada@example.com"},
        "messageId": "msg-preview-2",
        "timestamp": "2024-05-01T10:00:00.000Z",
        **extra,
    }


def secrets_in(requests: list[dict[str, Any]], *secrets: str) -> list[str]:
    text = json.dumps(requests)
    return [s for s in secrets if s in text]


@pytest.fixture(autouse=True)
def no_http():
    """A preview makes no request at all: any would fail the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False):
        yield


def test_an_sfmc_journey_preview_is_the_entry_call_after_a_token_call():
    vendor = SfmcJourney({"subdomain": SUBDOMAIN, "event_definition_key": "APIEvent-welcome"}, SFMC_CREDENTIALS)
    (request,) = vendor.preview(identify())
    assert request["method"] == "POST"
    assert request["url"] == f"https://{SUBDOMAIN}.rest.marketingcloudapis.com/interaction/v1/events"
    assert request["body"] == {
        "ContactKey": "user-42",
        "EventDefinitionKey": "APIEvent-welcome",
        "Data": {"userId": "user-42", "email": "Ada@example.com", "firstName": "Ada"},
    }
    assert f"https://{SUBDOMAIN}.auth.marketingcloudapis.com/v2/token" in request["note"]
    assert request["headers"]["Authorization"] == MASK
    assert not secrets_in([request], *SFMC_CREDENTIALS.values())


def test_an_sfmc_journey_preview_refuses_an_event_without_a_contact_key():
    vendor = SfmcJourney({"subdomain": SUBDOMAIN, "event_definition_key": "APIEvent-welcome"}, SFMC_CREDENTIALS)
    with pytest.raises(DeliveryError) as caught:
        vendor.preview(identify(userId=None, anonymousId="anon-1"))
    assert caught.value.code == "missing_contact_key"
    assert "filter this destination to identified users" in caught.value.hint


def test_an_sfmc_data_extension_preview_is_the_rowset_upsert_of_one_row():
    vendor = SfmcDataExtension({"subdomain": SUBDOMAIN, "data_extension_key": "CDPHub Contacts"}, SFMC_CREDENTIALS)
    (request,) = vendor.preview(identify())
    assert request["url"].endswith("/hub/v1/dataevents/key:CDPHub%20Contacts/rowset")
    assert request["body"] == [
        {
            "keys": {"ContactKey": "user-42"},
            "values": {
                "Email": "Ada@example.com",
                "FirstName": "Ada",
                "Plan": "pro",
                "LastSeen": "2024-05-01T10:00:00.000Z",
            },
        }
    ]
    with pytest.raises(DeliveryError) as caught:
        vendor.preview(identify(userId=""))
    assert caught.value.code == "missing_primary_key"
    assert caught.value.hint


def marketo(**config: Any) -> Marketo:
    return Marketo({"munchkin_id": "284-RPR-133", "activities": ACTIVITIES, **config}, MARKETO_CREDENTIALS)


def test_a_marketo_identify_preview_is_the_lead_upsert():
    (request,) = marketo(upsert_leads=True).preview(identify())
    assert request["url"] == "https://284-RPR-133.mktorest.com/rest/v1/leads.json"
    assert request["body"] == {
        "action": "createOrUpdate",
        "lookupField": "email",
        "input": [{"email": "Ada@example.com", "firstName": "Ada"}],
    }
    assert "/identity/oauth/token" in request["note"]
    assert not secrets_in([request], *MARKETO_CREDENTIALS.values())


def test_a_marketo_track_preview_looks_the_lead_up_first_then_adds_the_activity():
    lookup, activity = marketo().preview(track())
    assert lookup["method"] == "GET"
    assert lookup["url"] == (
        "https://284-RPR-133.mktorest.com/rest/v1/leads.json?filterType=email&filterValues=ada%40example.com"
        "&fields=id,email"
    )
    assert "Marketo looks the lead up first" in lookup["note"]
    assert activity["url"].endswith("/rest/v1/activities/external.json")
    (record,) = activity["body"]["input"]
    assert record["activityTypeId"] == 100001
    assert record["primaryAttributeValue"] == "A-1"
    assert record["attributes"] == [{"apiName": "total", "value": "49.5"}]
    assert record["activityDate"] == "2024-05-01T10:00:00Z"
    assert "upsert_leads off" in activity["note"]
    # With upsert_leads on, a lead the lookup does not find is created before its activity.
    assert [r["url"].rsplit("/", 1)[1] for r in marketo(upsert_leads=True).preview(track())] == [
        lookup["url"].rsplit("/", 1)[1],
        "leads.json",
        "external.json",
    ]


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (track(event="Product Viewed"), "not_for_vendor"),
        (identify(), "not_for_vendor"),  # upsert_leads is off
        (track(properties={"order_id": "A-1"}), "missing_lookup_value"),
        (track(properties={"email": "ada@example.com"}), "missing_primary_attribute"),
    ],
)
def test_a_marketo_preview_says_why_an_event_could_not_be_sent(event: dict[str, Any], code: str):
    with pytest.raises(DeliveryError) as caught:
        marketo().preview(event)
    assert caught.value.code == code
    assert caught.value.message
    assert caught.value.hint


def test_a_webhook_preview_masks_the_signature_and_secret_headers():
    vendor = Webhook(
        {"url": "https://hooks.example.com/in", "method": "PUT", "headers": {"X-Team": "growth"}},
        {"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}},
        {"id": "messageId", "email": "traits.email"},
    )
    (request,) = vendor.preview(identify())
    assert request["method"] == "PUT"
    assert request["url"] == "https://hooks.example.com/in"
    assert request["body"] == {"id": "msg-preview-1", "email": "Ada@example.com"}
    headers = request["headers"]
    assert headers["X-Team"] == "growth"
    assert headers["X-Api-Key"] == MASK
    assert headers["webhook-signature"] == MASK
    assert headers["webhook-id"] == "msg-preview-1"
    assert not secrets_in([request], SIGNING_SECRET, API_KEY)


def test_a_batching_webhook_preview_shows_the_batch_body():
    vendor = Webhook({"url": "https://hooks.example.com/in", "batch_size": 10}, {})
    (request,) = vendor.preview(track())
    assert request["body"] == {"batch": [track()]}
    assert request["note"] == "Not signed."
    assert "webhook-signature" not in request["headers"]


def test_a_segment_preview_is_the_batch_call_without_the_write_key():
    vendor = Segment({}, {"write_key": WRITE_KEY})
    (request,) = vendor.preview(identify())
    assert request["url"] == "https://api.segment.io/v1/batch"
    (item,) = request["body"]["batch"]
    assert "receivedAt" not in item
    assert item["userId"] == "user-42"
    assert request["headers"]["Authorization"] == MASK
    assert not secrets_in([request], WRITE_KEY)
    with pytest.raises(DeliveryError) as caught:
        vendor.preview(identify(traits={"bio": "x" * 40_000}))
    assert caught.value.code == "event_too_large"
