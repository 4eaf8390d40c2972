"""The Braze vendor against Braze's /users/track contract: attributes, custom events and purchases, packed 75 objects
a request, minor errors inside a 2xx, each error class with its hint, asserting every outgoing request whole."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
import requests
import responses

from integrations.crypto import MASK
from integrations.vendors import VENDORS
from integrations.vendors.braze import HINTS, KEY_PROBLEM, Braze
from integrations.vendors.contract import DeliveryError
from integrations.vendors.http import REDACTED
from tests.vendor_kit import body_of, fixture

ENDPOINT = "https://rest.iad-01.braze.com"
URL = f"{ENDPOINT}/users/track"
API_KEY = "brz-rest-8d0c4f2a-61b7-4e93-a5d1"
TIME = "2024-05-01T10:00:00.000Z"


def braze(mapping: Any = None, **config: Any) -> Braze:
    return Braze({"rest_endpoint": ENDPOINT, **config}, {"api_key": API_KEY}, mapping, timeout=5.0)


def identify(n: int = 1, **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": f"user-{n}",
        "anonymousId": f"anon-{n}",
        "traits": traits or {"email": f"ada{n}@example.com"},
        "messageId": f"msg-identify-{n}",
        "timestamp": TIME,
        "receivedAt": "2024-05-01T10:00:01.000Z",
    }


def track(name: str = "Signed Up", n: int = 1, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": name,
        "userId": f"user-{n}",
        "anonymousId": f"anon-{n}",
        "properties": properties,
        "messageId": f"msg-track-{n}",
        "timestamp": TIME,
    }


def order(*products: dict[str, Any], n: int = 1, **properties: Any) -> dict[str, Any]:
    return track("Order Completed", n, order_id=f"A-{n}", products=list(products), **properties)


def product(number: int = 1, **fields: Any) -> dict[str, Any]:
    return {"product_id": f"sku-{number}", "price": 19.5, "quantity": 1, "name": f"Mug {number}", **fields}


def sent_objects(call: Any) -> int:
    return sum(len(objects) for objects in body_of(call).values())


# The vendor and its request --------------------------------------------------------------------------


def test_the_braze_vendor_is_found_under_its_key_with_its_limits() -> None:
    assert VENDORS["braze"] is Braze
    assert Braze.max_batch == 75
    assert Braze.default_rate_limit == (100, 1.0)  # a tenth of the workspace's 3,000 per 3 s
    assert {"invalid_api_key", "access_denied", "wrong_endpoint"} <= Braze.setup_errors


def test_it_posts_an_identify_as_an_attributes_object_with_the_bearer_key(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=201, json=fixture("braze", "track_201_success.json"))

    (result,) = braze().deliver([identify(firstName="Ada", email="ada@example.com", plan="pro")])

    assert result.outcome == "delivered"
    assert result.status_code == 201
    (call,) = mocked.calls
    assert call.request.method == "POST"
    assert call.request.url == URL
    assert call.request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert call.request.headers["Content-Type"] == "application/json"
    assert body_of(call) == {
        "attributes": [{"external_id": "user-1", "plan": "pro", "first_name": "Ada", "email": "ada@example.com"}]
    }


def test_the_endpoint_may_end_with_a_slash_or_be_a_local_sandbox(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json={"message": "success"})
    mocked.post("http://127.0.0.1:9100/braze/users/track", json={"message": "success"})

    braze(rest_endpoint=ENDPOINT + "/").deliver([identify()])
    braze(rest_endpoint="http://127.0.0.1:9100/braze").deliver([identify()])

    assert [c.request.url for c in mocked.calls] == [URL, "http://127.0.0.1:9100/braze/users/track"]


# Mapping ---------------------------------------------------------------------------------------------


def test_standard_traits_become_braze_attributes_and_the_other_traits_custom_attributes() -> None:
    event = identify(
        firstName="Ada",
        lastName="Lovelace",
        email="ada@example.com",
        phone="+441234567890",
        birthday="1990-12-10T00:00:00.000Z",
        gender="Female",
        address={"city": "London", "country": "GB", "street": "1 St James's Sq"},
        avatar="https://example.com/ada.png",
        plan="pro",
        company={"name": "Analytical Engines"},
        nickname=None,  # a trait set to null unsets the custom attribute in Braze
    )

    (attributes,) = braze().map_event(event)["attributes"]

    assert attributes == {
        "external_id": "user-1",
        "plan": "pro",
        "company": {"name": "Analytical Engines"},
        "nickname": None,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "phone": "+441234567890",
        "dob": "1990-12-10",
        "gender": "F",
        "home_city": "London",
        "country": "GB",
        "image_url": "https://example.com/ada.png",
    }


@pytest.mark.parametrize(
    ("gender", "braze_gender"),
    [("male", "M"), ("W", "F"), ("other", "O"), ("not applicable", "N"), ("Prefer not to say", "P"), ("robot", None)],
)
def test_gender_becomes_one_of_brazes_letters_or_is_left_out(gender: str, braze_gender: str | None) -> None:
    (attributes,) = braze().map_event(identify(gender=gender))["attributes"]
    assert attributes.get("gender") == braze_gender


def test_a_birthday_that_is_not_a_date_is_left_out_rather_than_refused() -> None:
    (attributes,) = braze().map_event(identify(birthday="sometime in May", plan="pro"))["attributes"]
    assert attributes == {"external_id": "user-1", "plan": "pro"}


def test_a_track_event_becomes_a_custom_event_in_utc_without_the_properties_braze_refuses() -> None:
    event = {
        **track("Trial Started", plan="pro", seats=3, time="now", event_name="x", **{"$browser": "Firefox"}),
        "timestamp": "2024-05-01T12:00:00.000+02:00",
    }

    assert braze().map_event(event) == {
        "events": [
            {
                "external_id": "user-1",
                "name": "Trial Started",
                "time": "2024-05-01T10:00:00.000Z",
                "properties": {"plan": "pro", "seats": 3},
            }
        ]
    }


def test_an_order_completed_with_products_becomes_one_purchase_per_product() -> None:
    event = order(
        product(1, currency="gbp", category="Kitchen"), {"sku": "sku-2", "price": 5, "name": "Spoon"}, currency="EUR"
    )

    assert braze().map_event(event) == {
        "purchases": [
            {
                "external_id": "user-1",
                "product_id": "sku-1",
                "price": 19.5,
                "quantity": 1,
                "currency": "GBP",  # the product's own currency first
                "time": TIME,
                "properties": {"name": "Mug 1", "category": "Kitchen"},
            },
            {
                "external_id": "user-1",
                "product_id": "sku-2",  # the sku when there is no product_id
                "price": 5,
                "currency": "EUR",  # then the order's
                "time": TIME,
                "properties": {"name": "Spoon"},
                "quantity": 1,
            },
        ]
    }


def test_a_product_without_any_currency_takes_the_default_currency() -> None:
    (purchase,) = braze().map_event(order(product()))["purchases"]
    assert purchase["currency"] == "USD"
    (purchase,) = braze(default_currency="chf").map_event(order(product()))["purchases"]
    assert purchase["currency"] == "CHF"


def test_without_a_default_currency_a_product_without_one_fails_with_a_hint() -> None:
    with pytest.raises(DeliveryError) as caught:
        braze(default_currency="").map_event(order(product(1), product(2, currency="EUR")))
    assert caught.value.code == "invalid_currency"
    assert "Product 1 of 2" in caught.value.message
    assert caught.value.hint == HINTS["invalid_currency"]


def test_a_quantity_over_100_becomes_several_purchases_of_at_most_100() -> None:
    purchases = braze().map_event(order(product(quantity=250)))["purchases"]
    assert [p["quantity"] for p in purchases] == [100, 100, 50]
    assert {p["product_id"] for p in purchases} == {"sku-1"}


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "No id", "price": 3},
        {"product_id": "sku-1", "price": "3.00"},
        {"product_id": "sku-1", "price": 3, "quantity": 0},
        {"product_id": "sku-1", "price": 3, "quantity": 1.5},
    ],
)
def test_a_product_braze_could_not_take_fails_its_order_with_a_hint(bad: dict[str, Any]) -> None:
    with pytest.raises(DeliveryError) as caught:
        braze().map_event(order(product(1), bad))
    assert caught.value.code == "invalid_product"
    assert "Product 2 of 2" in caught.value.message
    assert caught.value.hint == HINTS["invalid_product"]


def test_an_order_without_products_or_another_event_name_is_a_custom_event() -> None:
    assert list(braze().map_event(track("Order Completed", total=120))) == ["events"]
    assert list(braze().map_event(track("Checkout Finished", products=[product()]))) == ["events"]


def test_the_purchase_event_names_are_configurable() -> None:
    vendor = braze(purchase_events=["Checkout Finished"])
    assert list(vendor.map_event(track("Checkout Finished", products=[product()]))) == ["purchases"]
    assert list(vendor.map_event(order(product()))) == ["events"]  # e.g. for Braze's eCommerce events instead


@pytest.mark.parametrize("name", ["", "$purchase", "x" * 256, None])
def test_an_event_name_braze_refuses_fails_with_a_hint(name: Any) -> None:
    with pytest.raises(DeliveryError) as caught:
        braze().map_event(track(name))
    assert caught.value.code == "invalid_event_name"
    assert caught.value.hint == HINTS["invalid_event_name"]


def test_a_custom_mapping_replaces_only_the_sections_it_gives() -> None:
    mapping = {
        "custom_attributes": {"plan_name": "traits.plan", "unset": "traits.missing"},
        "event": {"name": "join('', ['web_', event])", "properties": {"order": "properties.order_id"}},
        "purchase": {**Braze.default_mapping["purchase"], "properties": {"order": "properties.order_id"}},
    }
    vendor = braze(mapping)

    (attributes,) = vendor.map_event(identify(email="ada@example.com", plan="pro", seats=3))["attributes"]
    (event,) = vendor.map_event(track("Checkout Started", order_id="A-9"))["events"]
    (purchase,) = vendor.map_event(order(product()))["purchases"]

    assert attributes == {"external_id": "user-1", "plan_name": "pro", "email": "ada@example.com"}
    assert event == {
        "external_id": "user-1",
        "name": "web_Checkout Started",
        "properties": {"order": "A-9"},
        "time": TIME,
    }
    assert purchase["properties"] == {"order": "A-1"}


def test_the_identity_comes_from_the_event_and_the_mapping_cannot_replace_it() -> None:
    vendor = braze({"attributes": {"external_id": "traits.email", "email": "traits.email"}})
    (attributes,) = vendor.map_event(identify(email="ada@example.com"))["attributes"]
    assert attributes == {"external_id": "user-1", "email": "ada@example.com"}


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        ({"attribute": {}}, "mapping.attribute: unknown section"),
        ({"event": "properties"}, "mapping.event: must be an object"),
        ({"custom_attributes": 3}, "mapping.custom_attributes: must be an expression or an object"),
        ({"event": {"name": "event[["}}, "mapping.event.name: 'event[[' is not a valid JMESPath expression"),
    ],
)
def test_validate_names_a_mapping_section_braze_cannot_use(mapping: dict[str, Any], problem: str) -> None:
    problems = Braze.validate({"rest_endpoint": ENDPOINT}, {"api_key": API_KEY}, mapping)
    assert any(p.startswith(problem) for p in problems), problems


# Anonymous users and other event types ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "event", "reason"),
    [
        ({}, identify(), ""),
        ({}, track(), ""),
        ({}, {**identify(), "userId": None}, "the event has no userId: set config.anonymous_alias_label"),
        ({"anonymous_alias_label": "anonymous_id"}, {**identify(), "userId": None}, ""),
        ({}, {**track(), "type": "page"}, "Braze takes identify and track events only, not page events"),
        (None, {**track(), "userId": ""}, "the event has no userId"),
    ],
)
def test_skip_reason_filters_events_braze_cannot_key_or_take(config: Any, event: dict[str, Any], reason: str) -> None:
    found = Braze.skip_reason(config, event)
    assert found.startswith(reason) if reason else found == ""


def test_an_anonymous_event_that_reaches_deliver_fails_alone_with_a_hint(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=201, json={"message": "success", "attributes_processed": 1})

    anonymous, page, named = braze().deliver(
        [{**identify(1), "userId": None}, {**track(), "type": "page"}, identify(2)]
    )

    assert (anonymous.outcome, anonymous.error_code, anonymous.hint) == (
        "failed",
        "missing_user_id",
        HINTS["missing_user_id"],
    )
    assert (page.outcome, page.error_code, page.hint) == ("failed", "not_for_vendor", HINTS["not_for_vendor"])
    assert named.ok
    (call,) = mocked.calls
    assert body_of(call) == {"attributes": [{"external_id": "user-2", "email": "ada2@example.com"}]}


def test_with_an_alias_label_anonymous_users_go_as_aliases_braze_may_create() -> None:
    vendor = braze(anonymous_alias_label="anonymous_id")
    (event,) = vendor.map_event({**track("Viewed Pricing"), "userId": None})["events"]
    assert event == {
        "user_alias": {"alias_name": "anon-1", "alias_label": "anonymous_id"},
        "_update_existing_only": False,
        "name": "Viewed Pricing",
        "time": TIME,
    }
    # A known user keeps its external_id.
    assert vendor.map_event(track())["events"][0]["external_id"] == "user-1"


# Batching --------------------------------------------------------------------------------------------


def test_75_objects_share_one_request(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=201, json={"message": "success"})
    events = [identify(n) for n in range(50)] + [track(n=n) for n in range(23)] + [order(product(1), product(2))]

    results = braze().deliver(events)

    assert [r.outcome for r in results] == ["delivered"] * 74
    (call,) = mocked.calls
    body = body_of(call)
    assert [len(body[a]) for a in ("attributes", "events", "purchases")] == [50, 23, 2]


def test_an_order_that_would_cross_75_objects_starts_the_next_request_whole(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=201, json={"message": "success"})
    events = [identify(n) for n in range(74)] + [order(product(1), product(2), product(3))]
    vendor = braze()
    gated: list[int] = []
    vendor.http.gate = lambda: gated.append(1)  # the engine's rate limit for calls beyond the first

    results = vendor.deliver(events)

    assert all(r.ok for r in results)
    first, second = mocked.calls
    assert sent_objects(first) == 74
    assert list(body_of(second)) == ["purchases"]
    assert [p["product_id"] for p in body_of(second)["purchases"]] == ["sku-1", "sku-2", "sku-3"]
    assert gated == [1], "the second request waits for the destination's rate limit"
    assert results[0].exchanges != results[-1].exchanges  # each event keeps the exchange of its own request


def test_objects_per_request_lowers_the_limit_for_mau_contracts(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=201, json={"message": "success"})
    vendor = braze(objects_per_request=50)

    vendor.deliver([identify(n) for n in range(51)])

    assert vendor.max_batch == 50
    assert [sent_objects(c) for c in mocked.calls] == [50, 1]


def test_an_order_larger_than_one_request_fails_alone_with_a_hint(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=201, json={"message": "success"})

    big, small = braze().deliver([order(*[product(n) for n in range(76)]), identify()])

    assert (big.outcome, big.error_code, big.hint) == ("failed", "too_many_products", HINTS["too_many_products"])
    assert "76 purchase objects" in big.error_message
    assert small.ok
    assert [sent_objects(c) for c in mocked.calls] == [1]


# Answers ---------------------------------------------------------------------------------------------


def test_minor_errors_fail_only_the_events_whose_objects_they_name(mocked: responses.RequestsMock) -> None:
    # events[1] and purchases[0] are refused: the second track event and the order (one of its two purchases).
    mocked.post(URL, status=201, json=fixture("braze", "track_201_minor_errors.json"))
    events = [track(n=1), identify(2), track(n=3), order(product(1), product(2), n=4)]

    first, profile, refused, refused_order = braze().deliver(events)

    assert first.ok
    assert profile.ok
    assert (refused.outcome, refused.status_code, refused.error_code) == ("failed", 201, "missing_identifier")
    assert refused.error_message == (
        "Braze refused events[1]: 'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"
    )
    assert refused.hint == HINTS["missing_identifier"]
    assert (refused_order.outcome, refused_order.error_code) == ("failed", "invalid_value")
    assert refused_order.error_message == "Braze refused purchases[0]: 'quantity' is not valid"
    assert refused_order.hint == HINTS["invalid_value"]
    assert (refused.retry_after, refused_order.retry_after) == (None, None)  # a retry would duplicate the rest
    assert len(first.exchanges) == 1
    assert first.exchanges == refused.exchanges


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("The value provided for the 'email' field is not a valid email.", "invalid_email"),
        ("provided external_id is blacklisted and disallowed", "blocked_external_id"),
        # Another client saw the missing-identifier error with curly quotes: it must not pass for an email error.
        (
            "\u2018external_id\u2019, \u2018braze_id\u2019, \u2018user_alias\u2019 or \u2018email\u2019 is required",
            "missing_identifier",
        ),
    ],
)
def test_each_kind_of_minor_error_gets_its_hint(mocked: responses.RequestsMock, kind: str, code: str) -> None:
    errors = [{"type": kind, "input_array": "attributes", "index": 0}]
    mocked.post(URL, status=201, json={"message": "success", "errors": errors})

    (result,) = braze().deliver([identify()])

    assert (result.outcome, result.error_code, result.hint) == ("failed", code, HINTS[code])


def test_minor_errors_that_name_no_object_fail_no_event(mocked: responses.RequestsMock) -> None:
    # Braze's errors page also shows plain strings; out-of-range indexes name nothing either.
    errors = ["something was off", {"type": "'time' is not valid", "input_array": "events", "index": 7}]
    mocked.post(URL, status=201, json={"message": "success", "errors": errors})

    results = braze().deliver([track(), identify()])

    assert [r.outcome for r in results] == ["delivered", "delivered"]


def test_a_400_refusing_every_object_fails_each_event_with_its_own_reason(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=400, json=fixture("braze", "track_400_invalid_data.json"))

    named, other = braze().deliver([identify(1), identify(2)])

    assert (named.outcome, named.error_code, named.hint) == ("failed", "invalid_email", HINTS["invalid_email"])
    assert "not a valid email" in named.error_message
    assert (other.outcome, other.error_code, other.status_code) == ("failed", "invalid_data", 400)
    assert "Valid data must be provided" in other.error_message
    assert other.hint == HINTS["invalid_data"]


@pytest.mark.parametrize(
    ("message", "code"),
    [("Max Input Length Exceeded", "too_many_objects"), ("Bad Request", "bad_request")],
)
def test_other_400s_fail_with_brazes_message_and_a_hint(
    mocked: responses.RequestsMock, message: str, code: str
) -> None:
    mocked.post(URL, status=400, json={"message": message})

    (result,) = braze().deliver([identify()])

    assert (result.outcome, result.error_code, result.hint) == ("failed", code, HINTS[code])
    assert result.error_message == f"HTTP 400: {message}"
    assert code not in Braze.setup_errors


def test_a_refused_request_does_not_stop_the_next_one(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=400, json={"message": "Bad Request"})
    mocked.post(URL, status=201, json={"message": "success"})

    results = braze().deliver([identify(n) for n in range(74)] + [order(product(1), product(2))])

    assert [r.outcome for r in results] == ["failed"] * 74 + ["delivered"]


def test_a_401_is_a_setup_error_that_points_at_the_key_and_the_instance(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=401, json=fixture("braze", "track_401_invalid_api_key.json"))

    results = braze().deliver([identify(1), identify(2)])

    for result in results:
        assert (result.outcome, result.status_code, result.error_code) == ("failed", 401, "invalid_api_key")
        assert result.error_message == "HTTP 401: Invalid API Key"
        assert "users.track" in result.hint
        assert "rest_endpoint" in result.hint  # a key from another instance is refused the same way
    assert "invalid_api_key" in Braze.setup_errors


@pytest.mark.parametrize(
    ("status", "headers", "code"),
    [
        (403, {}, "access_denied"),
        (404, {}, "wrong_endpoint"),
        (301, {"Location": "https://www.braze.com/"}, "wrong_endpoint"),
    ],
)
def test_a_refused_key_or_a_wrong_endpoint_is_a_setup_error_with_a_hint(
    mocked: responses.RequestsMock, status: int, headers: dict[str, str], code: str
) -> None:
    mocked.post(URL, status=status, json={"message": "Access Denied"}, headers=headers)

    (result,) = braze().deliver([identify()])

    assert (result.outcome, result.error_code, result.hint) == ("failed", code, HINTS[code])
    assert code in Braze.setup_errors


def test_a_setup_error_ends_the_batch_without_sending_the_next_request(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=401, json={"message": "Invalid API Key"})

    results = braze().deliver([identify(n) for n in range(74)] + [order(product(1), product(2))])

    assert {r.error_code for r in results} == {"invalid_api_key"}
    assert len(mocked.calls) == 1


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"X-RateLimit-Retry-After": "12"}, 12.0),
        ({"x-ratelimit-retry-after": "12", "Retry-After": "30"}, 12.0),  # lower-case, as over HTTP/2
        ({"Retry-After": "30", "X-RateLimit-Reset": "5"}, 30.0),
        ({"X-RateLimit-Reset": "5"}, 5.0),  # seconds until the reset, as RudderStack saw it
        ({}, None),  # nothing said: the engine's backoff
    ],
)
def test_a_429_throttles_for_the_wait_braze_gives(
    mocked: responses.RequestsMock, headers: dict[str, str], wait: float | None
) -> None:
    mocked.post(URL, status=429, json=fixture("braze", "track_429_rate_limited.json"), headers=headers)

    results = braze().deliver([identify(1), identify(2)])

    for result in results:
        assert (result.outcome, result.error_code, result.hint) == ("throttled", "rate_limited", HINTS["rate_limited"])
        assert result.retry_after == wait


@pytest.mark.parametrize(("offset", "wait"), [(40, 40.0), (-5, 0.0)])
def test_a_429_reset_in_epoch_seconds_waits_until_that_time(
    mocked: responses.RequestsMock, offset: int, wait: float
) -> None:
    # Braze documents X-RateLimit-Reset as UTC epoch seconds; a reset already past means go again at once.
    headers = {"X-RateLimit-Reset": str(int(time.time()) + offset)}
    mocked.post(URL, status=429, json=fixture("braze", "track_429_rate_limited.json"), headers=headers)

    (result,) = braze().deliver([identify()])

    assert result.outcome == "throttled"
    assert result.retry_after == pytest.approx(wait, abs=2)


def test_a_429_ends_the_batch_and_the_later_events_wait_too(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=429, json={"message": "Too Many Requests"}, headers={"X-RateLimit-Retry-After": "3"})

    results = braze().deliver([identify(n) for n in range(74)] + [order(product(1), product(2))])

    assert {(r.outcome, r.retry_after) for r in results} == {("throttled", 3.0)}
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_with_a_hint(mocked: responses.RequestsMock, status: int) -> None:
    mocked.post(URL, status=status, body="<html>Bad Gateway</html>")

    (result,) = braze().deliver([identify()])

    assert (result.outcome, result.error_code) == ("retry", f"http_{status}")
    assert "retries by itself" in result.hint


def test_a_timeout_is_retried_with_a_hint(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, body=requests.Timeout("Read timed out."))

    (result,) = braze().deliver([identify()])

    assert (result.outcome, result.error_code) == ("retry", "timeout")
    assert "retries by itself" in result.hint


def test_an_endpoint_host_that_does_not_exist_is_a_setup_error(
    mocked: responses.RequestsMock, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ALLOW_PRIVATE_URLS = False  # the address guard resolves the host before any call

    def unresolvable(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)

    (result,) = braze(rest_endpoint="https://rest.iad-99.braze.com").deliver([identify()])

    assert (result.outcome, result.error_code, result.hint) == ("failed", "wrong_endpoint", HINTS["wrong_endpoint"])
    assert result.error_message == "The host rest.iad-99.braze.com cannot be resolved."
    assert len(mocked.calls) == 0


def test_the_api_key_is_never_recorded_even_when_braze_echoes_it(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=401, json={"message": f"Invalid API Key {API_KEY}"}, headers={"X-Echo": API_KEY})

    (result,) = braze().deliver([identify()])

    (exchange,) = result.exchanges
    assert exchange["request"]["headers"]["Authorization"] == REDACTED
    assert API_KEY not in json.dumps(result.exchanges)
    assert API_KEY not in result.error_message
    assert REDACTED in result.error_message


# Settings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://rest.iad-01.braze.com",
        "https://rest.fra-02.braze.eu/",
        "https://rest.us-10.braze.com",
        "https://braze-proxy.example.com/braze",  # any https URL: a proxy
        "http://127.0.0.1:9100/braze",  # the local sandbox
        "http://localhost:9100/braze",
    ],
)
def test_good_endpoints_validate_cleanly(endpoint: str) -> None:
    assert Braze.validate({"rest_endpoint": endpoint}, {"api_key": API_KEY}) == []


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({}, "config.rest_endpoint: required"),
        ({"rest_endpoint": "rest.iad-01.braze.com"}, "must be a URL like https://rest.iad-01.braze.com"),
        ({"rest_endpoint": "http://rest.iad-01.braze.com"}, "must start with https://"),
        ({"rest_endpoint": "https://dashboard-01.braze.com"}, "not a REST endpoint: use https://rest.iad-01.braze.com"),
        ({"rest_endpoint": "https://dashboard-03.braze.com/"}, "use https://rest.iad-03.braze.com"),
        ({"rest_endpoint": "https://dashboard-02.braze.eu"}, "use https://rest.fra-02.braze.eu"),
        ({"rest_endpoint": "https://dashboard.us-10.braze.com"}, "use https://rest.us-10.braze.com"),
        ({"rest_endpoint": "https://dashboard-10.braze.com"}, "use https://rest.us-10.braze.com"),
        ({"rest_endpoint": "https://dashboard.au-01.braze.com"}, "use https://rest.au-01.braze.com"),
        ({"rest_endpoint": "https://sdk.iad-05.braze.com"}, "use https://rest.iad-05.braze.com"),
        ({"rest_endpoint": "https://www.braze.com"}, "use your dashboard's, like https://rest.iad-01.braze.com"),
        ({"rest_endpoint": f"{URL}"}, "leave out /users/track"),
        ({"rest_endpoint": ENDPOINT, "purchase_events": ["Order Completed", " "]}, "purchase_events: must be a list"),
        ({"rest_endpoint": ENDPOINT, "default_currency": "dollars"}, "default_currency: must be a three-letter"),
        ({"rest_endpoint": ENDPOINT, "objects_per_request": 76}, "objects_per_request: must be between 1 and 75"),
        ({"rest_endpoint": ENDPOINT, "objects_per_request": 0}, "objects_per_request: must be between 1 and 75"),
        ({"rest_endpoint": ENDPOINT, "batch": 10}, "config.batch: unknown setting"),
    ],
)
def test_a_bad_config_is_refused_with_a_message_that_says_what_to_do(config: dict[str, Any], problem: str) -> None:
    problems = Braze.validate(config, {"api_key": API_KEY})
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("key", ["", "   ", f'"{API_KEY}"', f" {API_KEY}", f"'{API_KEY}'"])
def test_a_blank_or_quoted_api_key_is_refused(key: str) -> None:
    assert Braze.validate({"rest_endpoint": ENDPOINT}, {"api_key": key}) == [f"credentials.{KEY_PROBLEM}"]
    assert Braze.validate({"rest_endpoint": ENDPOINT}, {}) == ["credentials.api_key: required"]


def test_an_invalid_config_refuses_to_build_the_vendor() -> None:
    with pytest.raises(DeliveryError) as caught:
        Braze({"rest_endpoint": "https://dashboard-01.braze.com"}, {"api_key": API_KEY})
    assert caught.value.code == "invalid_settings"


def test_the_presets_are_valid_mappings_for_their_event_types() -> None:
    for preset in Braze.presets.values():
        assert Braze.validate({"rest_endpoint": ENDPOINT}, {"api_key": API_KEY}, preset["mapping"]) == []
    profiles, purchases = Braze.presets["profiles"], Braze.presets["events_and_purchases"]
    assert profiles["filter"]["types"] == ["identify"]
    assert purchases["filter"]["types"] == ["track"]
    assert braze(profiles["mapping"]).map_event(identify()) == braze().map_event(identify())


# Preview ---------------------------------------------------------------------------------------------


def test_the_preview_is_the_real_request_with_the_key_masked() -> None:
    with responses.RequestsMock():  # no HTTP at all
        (request,) = braze().preview(order(product()))

    assert request["method"] == "POST"
    assert request["url"] == URL
    assert request["headers"] == {"Content-Type": "application/json", "Authorization": MASK}
    assert request["body"] == braze().map_event(order(product()))
    assert "75 objects" in request["note"]
    assert API_KEY not in json.dumps(request)


def test_the_preview_says_why_an_event_could_not_be_sent() -> None:
    with pytest.raises(DeliveryError) as caught:
        braze().preview({**track(), "userId": None})
    assert caught.value.code == "missing_user_id"
    assert "anonymous_alias_label" in caught.value.hint
