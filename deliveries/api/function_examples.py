"""What /api/v1/functions shows in its document: a function of each kind as a script creates it, an answer, the
changes people make, and Run test's bodies. Kept apart from the endpoint, which reads better without them."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

DESTINATION_CODE = """async function onTrack(event, settings) {
  const response = await fetch(`https://${settings.region}.crm.example.com/api/events`, {
    method: "POST",
    headers: { Authorization: `Bearer ${settings.apiKey}`, "Content-Type": "application/json" },
    body: JSON.stringify({ user: event.userId, name: event.event, properties: event.properties }),
  });
  if (response.status >= 500 || response.status === 429) {
    throw new RetryError(`The CRM answered ${response.status}`);
  }
}
"""
SOURCE_CODE = """async function onRequest(request, settings) {
  const body = request.json();
  Segment.identify({ userId: body.customer_id, traits: { email: body.email, plan: body.plan } });
}
"""
INSERT_CODE = """async function onTrack(event, settings) {
  const email = (event.properties && event.properties.email) || "";
  if (settings.domains.some((domain) => email.endsWith("@" + domain))) {
    throw new DropEvent("a test user");
  }
  return event;
}
"""
DESTINATION = {
    "name": "CRM sync",
    "slug": "crm-sync",
    "kind": "destination",
    "description": "Track events to the CRM's events API",
    "code": DESTINATION_CODE,
    "settings": [
        {"name": "apiKey", "label": "API key", "type": "string", "required": True, "sensitive": True},
        {"name": "region", "label": "Region", "type": "string", "description": "eu or us", "required": True},
    ],
}
SOURCE = {
    "name": "Billing webhooks",
    "slug": "billing-webhooks",
    "kind": "source",
    "code": SOURCE_CODE,
    "settings": [],
}
INSERT = {
    "name": "Drop test users",
    "slug": "drop-test-users",
    "kind": "insert",
    "code": INSERT_CODE,
    "settings": [{"name": "domains", "label": "Test domains", "type": "array", "required": True}],
}
CREATE_EXAMPLES = [
    OpenApiExample("A destination function", request_only=True, value={**DESTINATION, "note": "first version"}),
    OpenApiExample("A source function", request_only=True, value=SOURCE),
    OpenApiExample("An insert function", request_only=True, value=INSERT),
]
ANSWER = OpenApiExample(
    "A function",
    response_only=True,
    value={
        "id": 4,
        **DESTINATION,
        "version": 2,
        "created_at": "2025-04-01T08:00:00Z",
        "updated_at": "2025-04-02T10:30:00Z",
    },
)
CHANGE_EXAMPLES = [
    OpenApiExample(
        "New code, with a note for its version",
        request_only=True,
        value={"code": DESTINATION_CODE.replace("status >= 500", "status >= 502"), "note": "502 and up retry"},
    ),
    OpenApiExample("A new description (no new version)", request_only=True, value={"description": "To the CRM"}),
]

EVENT = {"type": "track", "userId": "user-42", "event": "Order Completed", "properties": {"total": 120}}
TEST_EXAMPLES = [
    OpenApiExample(
        "A destination function, fetch recorded and not sent",
        request_only=True,
        value={"event": EVENT, "settings": {"region": "eu"}, "secrets": {"apiKey": "crm_test_5f2b8c1d"}},
    ),
    OpenApiExample(
        "A source function with a webhook's body",
        request_only=True,
        value={
            "body": '{"customer_id": "cus_42", "email": "ada@example.com", "plan": "pro"}',
            "headers": {"content-type": "application/json"},
        },
    ),
    OpenApiExample(
        "An edit tried before it is saved, sent for real",
        request_only=True,
        value={"event": EVENT, "code": INSERT_CODE, "settings": {"domains": ["example.com"]}, "send": True},
    ),
    OpenApiExample(
        "What the run did",
        response_only=True,
        value={
            "handler": "onTrack",
            "outcome": "returned",
            "ok": True,
            "value": None,
            "error": None,
            "logs": [{"level": "log", "message": "sending Order Completed"}],
            "exchanges": [
                {
                    "request": {
                        "method": "POST",
                        "url": "https://eu.crm.example.com/api/events",
                        "headers": {"authorization": "[REDACTED]", "content-type": "application/json"},
                        "body": '{"user": "user-42", "name": "Order Completed", "properties": {"total": 120}}',
                    },
                    "response": {"status": 200, "headers": {}, "body": "{}"},
                    "note": "not sent: Run test recorded this call and answered it with an empty 200",
                    "duration_ms": 0,
                }
            ],
            "emitted": [],
            "duration_ms": 3.1,
            "sent": False,
        },
    ),
]
