"""What /api/v1/destinations shows in its document: a create body for each kind of destination (a vendor, a
webhook, a destination function, an insert function in front of a vendor), an answer, the changes a Marketer and an
administrator make, and who may change what. Kept apart from the endpoint, which reads better without them."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

WEBHOOK = {
    "name": "Order webhook",
    "slug": "order-webhook",
    "vendor": "webhook",
    "sources": ["website"],
    "config": {"url": "https://hooks.example.com/orders"},
    "credentials": {"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
    "filter": {"types": ["track"], "events": ["Order Completed"], "condition": None},
}
SFMC = {
    "name": "Welcome journey",
    "slug": "welcome-journey",
    "vendor": "sfmc_journey",
    "sources": ["website"],
    "config": {"subdomain": "mc-abc123", "event_definition_key": "APIEvent-welcome"},
    "credentials": {"client_id": "…", "client_secret": "…"},
    "filter": {"types": ["identify"], "events": [], "condition": None},
    "mapping": {"ContactKey": "userId", "Data": {"email": "traits.email"}},
}
FUNCTION = {
    "name": "CRM sync",
    "slug": "crm-sync",
    "vendor": "function",
    "sources": ["website"],
    "config": {"function": "crm-sync", "settings": {"region": "eu"}},
    "credentials": {"apiKey": "crm_live_5f2b8c1d"},
}
INSERT = {
    **{key: value for key, value in WEBHOOK.items() if key != "credentials"},
    "insert_function": "drop-test-users",
    "insert_settings": {"domains": ["example.com"]},
    "insert_secrets": {"lookupToken": "tok_9a8b7c6d"},
}
CREATE_EXAMPLES = [
    OpenApiExample("A Journey Builder entry", request_only=True, value=SFMC),
    OpenApiExample("A webhook", request_only=True, value=WEBHOOK),
    OpenApiExample("A destination function (its sensitive settings as credentials)", request_only=True, value=FUNCTION),
    OpenApiExample("A webhook behind an insert function", request_only=True, value=INSERT),
]
ANSWER = OpenApiExample(
    "A destination",
    response_only=True,
    value={
        "id": 7,
        **{k: v for k, v in SFMC.items() if k != "credentials"},
        "enabled": True,
        "paused": False,
        "state": "enabled",
        "credentials_set": {"client_id": "set", "client_secret": "set"},
        "insert_function": None,
        "insert_settings": {},
        "insert_secrets_set": {},
        "consent_categories": [],
        "rate_limit": None,
        "rate_period": None,
        "concurrency": None,
        "timeout": 10.0,
        "retry_deadline_seconds": 14400,
        "last_error": "",
        "last_error_code": "",
        "last_error_hint": "",
        "last_error_at": None,
        "last_delivered_at": "2025-05-01T09:30:00Z",
        "created_at": "2025-04-01T08:00:00Z",
        "updated_at": "2025-04-01T08:00:00Z",
    },
)
CHANGE_EXAMPLES = [
    OpenApiExample(
        "A Marketer's change: the mapping",
        request_only=True,
        value={"mapping": {"ContactKey": "userId", "Data": {"email": "traits.email || properties.email"}}},
    ),
    OpenApiExample(
        "A Marketer's change: the filter",
        request_only=True,
        value={"filter": {"types": ["track"], "events": ["Order Completed"], "condition": "properties.total > `100`"}},
    ),
    OpenApiExample(
        "A new client secret (the client id is kept)", request_only=True, value={"credentials": {"client_secret": "…"}}
    ),
    OpenApiExample("Remove a secret header", request_only=True, value={"credentials": {"headers": None}}),
    OpenApiExample("Pause delivery", request_only=True, value={"paused": True}),
    OpenApiExample(
        "Run an insert function first",
        request_only=True,
        value={key: INSERT[key] for key in ("insert_function", "insert_settings", "insert_secrets")},
    ),
    OpenApiExample(
        "No insert function any more (its settings and secrets go with it)",
        request_only=True,
        value={"insert_function": None},
    ),
]
RIGHTS = (
    " An administrator (the `integrations.manage_credentials` permission) may change every field. Without it, "
    "`credentials` and `insert_secrets` are refused, and a change may name `mapping` and `filter` only (a "
    "Marketer's rights, as in the admin): any other field is a 403 and nothing changes."
)
