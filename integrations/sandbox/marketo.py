"""Fake Marketo: identity, lead lookup and upsert, custom activities, and the instance limits (606/607/615).

Contract: /work/shared/reference/vendor-contracts.md §2 (checklist §2.8). Served under /marketo, so the hub's
Marketo base URL is `{sandbox}/marketo` and paths are /marketo/identity/... and /marketo/rest/v1/...
"""

from __future__ import annotations

import copy
import math
import secrets
import time
import uuid
from collections import Counter, deque
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from typing import Any

from integrations.sandbox.fake import Fake, Host, amount, objects, texts, whole
from integrations.sandbox.wire import Request, Response

REST = "/marketo/rest/v1"
MAX_BODY = 1024 * 1024  # 413 above (§2.2)
MAX_URI = 8 * 1024  # 414 above: resend as POST ?_method=GET (§2.2)
BATCH_LIMIT = 300
ROUTES = {
    ("GET", "/leads.json"): "lookup",
    ("POST", "/leads.json"): "upsert",
    ("POST", "/activities/external.json"): "add_activities",
}
ACTIONS = {"createOrUpdate", "createOnly", "updateOnly", "createDuplicate"}
DEFAULT_LOOKUP_FIELDS = ["id", "email", "updatedAt", "createdAt", "firstName", "lastName"]
SYSTEM_FIELDS = {"id", "createdAt", "updatedAt"}
INDEXED = ("email", "userId")
ACTIVITY_REQUIRED = ("leadId", "activityDate", "activityTypeId", "primaryAttributeValue")

DEFAULT_CLIENTS = {"sandbox-marketo-client": "sandbox-marketo-secret"}
DEFAULT_LEAD_FIELDS = ["email", "firstName", "lastName", "phone", "title", "company", "userId"]
DEFAULT_SEARCHABLE_FIELDS = ["id", "email", "userId"]
DEFAULT_ACTIVITY_TYPES: dict[str, dict[str, Any]] = {
    "100001": {"name": "Order Completed", "primary_attribute": "orderId", "attributes": ["total", "currency"]},
    "100002": {"name": "Signed Up", "primary_attribute": "plan", "attributes": ["source"]},
}
DEFAULT_LEADS: list[dict[str, Any]] = [
    {"email": "ada@example.com", "userId": "user-1", "firstName": "Ada", "lastName": "Lovelace"},
    {"email": "grace@example.com", "userId": "user-2", "firstName": "Grace", "lastName": "Hopper"},
]


def envelope(success: bool, **extra: Any) -> Response:
    """Marketo answers HTTP 200 with this envelope even for errors (§2.2)."""
    request_id = f"{secrets.token_hex(2)}#{int(time.time() * 1000):x}"
    return Response(200, {"requestId": request_id, "success": success, **extra})


def failure(code: int, message: str) -> Response:
    return envelope(False, errors=[{"code": str(code), "message": message}])


def skipped(code: int, message: str, key: str = "reasons") -> dict[str, Any]:
    return {"status": "skipped", key: [{"code": str(code), "message": message}]}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quota_day() -> date:
    """The daily quota resets at 12:00 AM CST (UTC-6)."""
    return (datetime.now(UTC) - timedelta(hours=6)).date()


def _index_key(field: str, value: Any) -> str:
    return str(value).lower() if field == "email" else str(value)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Marketo(Fake):
    """Marketo state (tokens, leads, activities, limit counters) and its routes; `sb.lock` guards every field."""

    service = "marketo"
    settings = {
        "marketo_token_lifetime": whole(3600, "Marketo token lifespan in seconds"),
        "marketo_rate_limit": whole(100, "Marketo calls per window before 606"),
        "marketo_rate_window": amount(20.0, "seconds of Marketo's sliding rate window"),
        "marketo_concurrency": whole(10, "Marketo calls in flight before 615"),
        "marketo_daily_quota": whole(50_000, "Marketo calls per day before 607"),
        "marketo_clients": texts(DEFAULT_CLIENTS, "client_id -> client_secret of Marketo API users", secrets=True),
        "marketo_lead_fields": texts(DEFAULT_LEAD_FIELDS, "the instance's lead fields (REST API names)"),
        "marketo_searchable_fields": texts(DEFAULT_SEARCHABLE_FIELDS, "lead fields usable as filterType, lookupField"),
        "marketo_activity_types": objects(DEFAULT_ACTIVITY_TYPES, "activity type id -> {name, primary_attribute, …}"),
        "marketo_leads": objects(DEFAULT_LEADS, "the leads the instance holds at start and after a reset"),
    }
    counters = ("marketo_tokens_issued", "marketo_calls", "marketo_606", "marketo_615", "marketo_607", "marketo_faults")
    readers = ("leads", "activities")
    banner = {"marketo_base": "Marketo base"}

    def __init__(self, sb: Host) -> None:
        self.in_flight = 0  # calls being answered; a reset leaves them be, they still finish
        super().__init__(sb)

    def links(self, url: str) -> dict[str, str]:
        return {
            "marketo_base": f"{url}/marketo",
            "marketo_leads": f"{url}/_sandbox/marketo/leads",
            "marketo_activities": f"{url}/_sandbox/marketo/activities",
        }

    def read(self, route: str) -> Response | None:
        if route == "marketo/leads":
            return Response(200, {"leads": copy.deepcopy(self.leads())})
        if route == "marketo/activities":
            return Response(200, {"activities": copy.deepcopy(self.activities())})
        return None

    def leads(self) -> list[dict[str, Any]]:
        return list(self.leads_by_id.values())

    def activities(self) -> list[dict[str, Any]]:
        return self.activity_records

    def gauges(self) -> dict[str, int]:
        return {"marketo_duplicate_leads": self.duplicate_leads()}

    def settings_changed(self, names: Collection[str]) -> None:
        if "marketo_leads" in names:
            self.load_leads(self.sb.settings.marketo_leads)

    def reset(self) -> None:
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.current: dict[str, str] = {}  # client_id -> its token
        self.activity_records: list[dict[str, Any]] = []
        self.window: deque[float] = deque()  # monotonic times of the calls in the rate window
        self.quota_day = _quota_day()
        self.quota_used = 0
        self.load_leads(self.sb.settings.marketo_leads)

    def load_leads(self, leads: list[dict[str, Any]]) -> None:
        self.leads_by_id: dict[int, dict[str, Any]] = {}
        self.index: dict[str, dict[str, set[int]]] = {field: {} for field in INDEXED}
        self.next_lead_id = 1
        now = _now()
        for lead in leads:
            lead_id = _as_int(lead.get("id")) or self.next_lead_id
            self.next_lead_id = max(self.next_lead_id, lead_id + 1)
            self.store({"createdAt": now, "updatedAt": now, **lead, "id": lead_id})

    def store(self, lead: dict[str, Any]) -> None:
        """Save a lead and index it by email (case-insensitive) and userId, dropping what it was indexed under."""
        old = self.leads_by_id.get(lead["id"], {})
        for field, index in self.index.items():
            if old.get(field) not in (None, ""):
                index[_index_key(field, old[field])].discard(lead["id"])
            if lead.get(field) not in (None, ""):
                index.setdefault(_index_key(field, lead[field]), set()).add(lead["id"])
        self.leads_by_id[lead["id"]] = lead

    def expire_tokens(self) -> None:
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    def duplicate_leads(self) -> int:
        """Leads beyond the first with the same email: upserts keyed by email should keep this at 0."""
        emails = Counter(str(lead["email"]).lower() for lead in self.leads_by_id.values() if lead.get("email"))
        return sum(count - 1 for count in emails.values())

    # Dispatch --------------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        sb = self.sb
        if req.path == "/marketo/identity/oauth/token" and req.method in {"GET", "POST"}:
            sb.pause()
            with sb.lock:
                return self.token(req)
        if not req.path.startswith(f"{REST}/"):
            return failure(610, "Requested resource not found")
        if len(req.raw) > MAX_BODY:
            return Response(413, "Request Entity Too Large", content_type="text/plain")
        if req.method == "GET" and req.uri_length > MAX_URI:
            return Response(414, "Request-URI Too Long", content_type="text/plain")
        with sb.lock:
            refusal = self.authorize(req)
            route = None
            if refusal is None:
                route, refusal = self.route(req)
            if refusal is None:
                refusal = self.admit()
        if refusal is not None:
            return refusal
        try:
            sb.pause()  # inside the in-flight count, so latency makes calls overlap as they do for real
            with sb.lock:
                return self.fault() or self.parse(req, route)
        finally:
            with sb.lock:
                self.in_flight -= 1

    def authorize(self, req: Request) -> Response | None:
        token = req.bearer() or req.query.get("access_token")
        if not token:
            return failure(600, "Access token empty")
        if token not in self.tokens:
            return failure(601, "Access token invalid")
        if self.tokens[token] <= time.monotonic():
            return failure(602, "Access token expired")
        return None

    def route(self, req: Request) -> tuple[Any, Response | None]:
        """The method serving a request (POST ?_method=GET is a GET), or Marketo's 605/610."""
        path = req.path.removeprefix(REST)
        method = "GET" if req.method == "POST" and req.query.get("_method") == "GET" else req.method
        if name := ROUTES.get((method, path)):
            return getattr(self, name), None
        if any(known == path for _, known in ROUTES):
            return None, failure(605, "HTTP Method not supported")
        return None, failure(610, "Requested resource not found")

    def admit(self) -> Response | None:
        """Count the call against the daily quota, the rate window and the in-flight limit (§2.7)."""
        s, sb, now = self.sb.settings, self.sb, time.monotonic()
        if (day := _quota_day()) != self.quota_day:
            self.quota_day, self.quota_used = day, 0
        if self.quota_used >= s.marketo_daily_quota:
            sb.count("marketo_607")
            return failure(607, "Daily quota reached")
        while self.window and self.window[0] <= now - s.marketo_rate_window:
            self.window.popleft()
        if len(self.window) >= s.marketo_rate_limit:
            return self.rate_limited()
        if self.in_flight >= s.marketo_concurrency:
            sb.count("marketo_615")
            return failure(615, "Concurrent access limit reached")
        self.window.append(now)
        self.quota_used += 1
        self.in_flight += 1
        sb.count("marketo_calls")
        return None

    def rate_limited(self) -> Response:
        limit, window = self.sb.settings.marketo_rate_limit, self.sb.settings.marketo_rate_window
        self.sb.count("marketo_606")
        return failure(606, f"Max rate limit '{limit}' exceeded with in '{window:g}' secs")

    def fault(self) -> Response | None:
        fault = self.sb.fault()
        if fault == "throttle":
            return self.rate_limited()
        if fault == "error":
            self.sb.count("marketo_faults")
            turn = self.sb.turn("marketo", 3)
            if turn == 0:
                return failure(611, "System error")
            if turn == 1:
                return failure(604, "Request time-out")
            return Response(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")
        return None

    def parse(self, req: Request, route: Any) -> Response:
        """Check the body's content type and JSON, then run the route with its parameters or body."""
        if req.method == "GET":
            return route(req.query)
        if req.query.get("_method") == "GET":
            if req.content_type != "application/x-www-form-urlencoded":
                return failure(612, "Invalid Content Type")
            return route({**req.query, **req.form})
        if req.content_type != "application/json":
            return failure(612, "Invalid Content Type")
        try:
            body = req.json
        except ValueError:
            return failure(609, "Invalid JSON")
        if not isinstance(body, dict):
            return failure(609, "Invalid JSON")
        return route(body)

    # Identity --------------------------------------------------------------------------------------

    def token(self, req: Request) -> Response:
        """The same token for a client until it expires, with the remaining lifespan (§2.1)."""
        params = {**req.query, **(req.form if req.method == "POST" else {})}
        client_id = params.get("client_id", "")
        secret = self.sb.settings.marketo_clients.get(client_id)
        if params.get("grant_type") != "client_credentials" or secret is None or secret != params.get("client_secret"):
            return Response(401, {"error": "invalid_client", "error_description": "Bad client credentials"})
        now = time.monotonic()
        token = self.current.get(client_id)
        if token is None or self.tokens.get(token, 0.0) <= now:
            token = f"{uuid.uuid4()}:ab"
            self.tokens[token] = now + self.sb.settings.marketo_token_lifetime
            self.current[client_id] = token
            self.sb.count("marketo_tokens_issued")
        # Float addition can leave a fresh token a hair over its lifetime (now + 3600 - now == 3600.0000001):
        # never report more than the lifetime.
        expires_in = min(self.sb.settings.marketo_token_lifetime, math.ceil(self.tokens[token] - now))
        body = {"access_token": token, "token_type": "bearer", "expires_in": expires_in}
        return Response(200, {**body, "scope": "api-user@example.com"})

    # Leads -----------------------------------------------------------------------------------------

    def find(self, field: str, values: list[str]) -> list[dict[str, Any]]:
        """Leads whose `field` is one of `values`, in id order (emails match whatever their case)."""
        if field == "id":
            ids = {_as_int(value) for value in values} & self.leads_by_id.keys()
        elif field in self.index:
            ids = set().union(*(self.index[field].get(_index_key(field, value), ()) for value in values))
        else:
            ids = {lead["id"] for lead in self.leads_by_id.values() if str(lead.get(field, "")) in set(values)}
        return [self.leads_by_id[lead_id] for lead_id in sorted(ids)]

    def lookup(self, params: dict[str, str]) -> Response:
        """GET /rest/v1/leads.json?filterType=…&filterValues=…&fields=… (§2.3)."""
        filter_type, raw_values = params.get("filterType", ""), params.get("filterValues", "")
        for name, value in (("filterType", filter_type), ("filterValues", raw_values)):
            if not value:
                return failure(701, f"{name} cannot be blank")
        if filter_type not in self.sb.settings.marketo_searchable_fields:
            return failure(1011, f"Field '{filter_type}' not supported")
        values = [value.strip() for value in raw_values.split(",") if value.strip()]
        if len(values) > BATCH_LIMIT:
            return failure(1003, "Too many filter values")
        wanted = [name.strip() for name in params.get("fields", "").split(",") if name.strip()]
        known = SYSTEM_FIELDS | set(self.sb.settings.marketo_lead_fields)
        if unknown := [name for name in wanted if name not in known]:
            return failure(1006, f"Field '{unknown[0]}' not found")
        fields = wanted or DEFAULT_LOOKUP_FIELDS
        leads = self.find(filter_type, values)
        return envelope(True, result=[{name: lead.get(name) for name in fields} for lead in leads])

    def upsert(self, body: dict[str, Any]) -> Response:
        """POST /rest/v1/leads.json: one result per input record, in input order (§2.4)."""
        action, lookup_field = body.get("action", "createOrUpdate"), body.get("lookupField", "email")
        records = body.get("input")
        if action not in ACTIONS:
            return failure(1003, f"Invalid action '{action}'")
        if lookup_field == "id" and action != "updateOnly":
            return failure(1003, "lookupField 'id' can only be used with action 'updateOnly'")
        if lookup_field not in self.sb.settings.marketo_searchable_fields:
            return failure(1011, f"Field '{lookup_field}' not supported")
        if not isinstance(records, list) or not records:
            return failure(701, "input cannot be blank")
        if len(records) > BATCH_LIMIT:
            return failure(1003, f"Too many records: at most {BATCH_LIMIT} per call")
        return envelope(True, result=[self.upsert_one(record, action, lookup_field) for record in records])

    def upsert_one(self, record: Any, action: str, lookup_field: str) -> dict[str, Any]:
        if not isinstance(record, dict):
            return skipped(1003, "Invalid data")
        fields = set(self.sb.settings.marketo_lead_fields)
        if unknown := [name for name in record if name not in fields and (name, lookup_field) != ("id", "id")]:
            return skipped(1006, f"Field '{unknown[0]}' not found")
        if action == "createDuplicate":
            return self.create(record)
        value = record.get(lookup_field)
        if value in (None, ""):
            return skipped(1002, f"Value for required field '{lookup_field}' not specified")
        matches = self.find(lookup_field, [str(value)])
        if action == "createOnly":
            return skipped(1005, "Lead already exists") if matches else self.create(record)
        if len(matches) > 1:
            return skipped(1007, "Multiple lead match lookup criteria")
        if matches:
            changes = {name: item for name, item in record.items() if name != "id"}
            self.store({**matches[0], **changes, "updatedAt": _now()})
            return {"id": matches[0]["id"], "status": "updated"}
        return skipped(1004, "Lead not found") if action == "updateOnly" else self.create(record)

    def create(self, record: dict[str, Any]) -> dict[str, Any]:
        lead_id, self.next_lead_id = self.next_lead_id, self.next_lead_id + 1
        now = _now()
        self.store({**record, "id": lead_id, "createdAt": now, "updatedAt": now})
        return {"id": lead_id, "status": "created"}

    # Activities ------------------------------------------------------------------------------------

    def add_activities(self, body: dict[str, Any]) -> Response:
        """POST /rest/v1/activities/external.json: one result per record, in input order (§2.5)."""
        records = body.get("input")
        if not isinstance(records, list) or not records:
            return failure(701, "input cannot be blank")
        if len(records) > BATCH_LIMIT:
            return failure(1003, f"Too many records: at most {BATCH_LIMIT} per call")
        return envelope(True, result=[self.add_activity(record) for record in records])

    def add_activity(self, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            return skipped(1003, "Invalid data", "errors")
        for name in ACTIVITY_REQUIRED:
            if record.get(name) in (None, ""):
                return skipped(1002, f"Value for required field '{name}' not specified", "errors")
        lead_id = _as_int(record["leadId"])
        if lead_id not in self.leads_by_id:
            return skipped(1004, "Lead not found", "errors")
        type_id = str(_as_int(record["activityTypeId"]))
        activity_type = self.sb.settings.marketo_activity_types.get(type_id)
        if activity_type is None or not activity_type.get("approved", True):
            return skipped(1013, "Activity type not found", "errors")
        try:
            datetime.fromisoformat(str(record["activityDate"]))
        except ValueError:
            return skipped(1001, f"Invalid value '{record['activityDate']}' for field 'activityDate'", "errors")
        attributes = record.get("attributes", [])
        if not isinstance(attributes, list) or not all(isinstance(item, dict) for item in attributes):
            return skipped(1003, "attributes must be a list of {apiName|name, value}", "errors")
        allowed = set(activity_type.get("attributes", ()))
        for item in attributes:
            name = item.get("apiName") or item.get("name")
            if name not in allowed:
                return skipped(1006, f"Field '{name}' not found", "errors")
        activity_id = len(self.activity_records) + 1
        named = [{"name": item.get("apiName") or item.get("name"), "value": item.get("value")} for item in attributes]
        self.activity_records.append(
            {
                "id": activity_id,
                "marketoGUID": str(activity_id),
                "leadId": lead_id,
                "activityDate": record["activityDate"],
                "activityTypeId": int(type_id),
                "primaryAttributeValue": record["primaryAttributeValue"],
                "attributes": named,
            }
        )
        return {"id": activity_id, "marketoGUID": str(activity_id), "status": "added"}
