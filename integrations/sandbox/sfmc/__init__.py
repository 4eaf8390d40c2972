"""Fake Salesforce Marketing Cloud: v2 token, journey entry (sync and async) and DE rowset upsert.

Contract: /work/shared/reference/vendor-contracts.md §1 (checklist §1.9). Paths are served under /sfmc/auth
and /sfmc/rest so one port can host every vendor; what a data extension's columns accept is data_extensions.py.
"""

from __future__ import annotations

import copy
import re
import secrets
import time
import uuid
from typing import Any

from integrations.sandbox.fake import Fake, objects, rate, texts, whole
from integrations.sandbox.sfmc.data_extensions import (
    DEFAULT_DATA_EXTENSIONS,
    check_data_extensions,
    de_id,
    is_row,
    type_error,
)
from integrations.sandbox.wire import Request, Response

ERROR_DOCS = "https://developer.salesforce.com/docs/atlas.en-us.mc-apis.meta/mc-apis/error-handling.htm"
SCOPE = (
    "offline data_extensions_read data_extensions_write journeys_execute journeys_read "
    "list_and_subscribers_read list_and_subscribers_write"
)
ASYNC_MEMBER_LIMIT = 100
ROWSET = re.compile(r"/hub/v1/dataevents/key:(?P<key>[^/]+)/rowset")

_CONTACT_FIELDS = ["userId", "email", "firstName", "lastName", "name", "phone", "title", "username", "createdAt"]
# The seed's Datafly Signal example (POST /v1/admin/integrations) names this package and this event definition.
SIGNAL_LEAD_FIELDS = ["email", "first_name", "last_name", "phone", "lead_type", "lead_value", "currency", "user_id"]
DEFAULT_CLIENTS = {"sandbox-sfmc-client": "sandbox-sfmc-secret", "abc123clientid": "shh-secret-value"}
DEFAULT_EVENT_DEFINITIONS: dict[str, dict[str, Any]] = {
    "APIEvent-welcome": {"fields": [*_CONTACT_FIELDS, "plan"], "running": True},
    "APIEvent-order-completed": {
        "fields": [*_CONTACT_FIELDS, "event", "orderId", "total", "currency"],
        "running": True,
    },
    "APIEvent-paused": {"fields": [*_CONTACT_FIELDS, "plan"], "running": False},
    "datafly_lead_submitted": {"fields": SIGNAL_LEAD_FIELDS, "running": True},
    # The seed article's destination function sends these fields (integrations/functions/examples/sfmc_journey.js).
    "APIEvent-welcome-function": {"fields": ["userid", "email", "name", "industry"], "running": True},
}


def error(status: int, errorcode: int, message: str, **extra: Any) -> Response:
    """The common REST error envelope (§1.3)."""
    return Response(status, {"message": message, "errorcode": errorcode, "documentation": "", **extra})


NOT_AUTHORIZED = Response(401, {"documentation": ERROR_DOCS, "errorcode": 0, "message": "Not Authorized"})
SERVICE_NOT_FOUND = Response(596, {"message": "Service Not Found", "errorcode": 0})
INVALID_MESSAGE = error(400, 10004, "Invalid message format")


class Sfmc(Fake):
    """SFMC state (tokens, journey entries, DE rows) and its routes; `sb.lock` guards every field."""

    service = "sfmc"
    settings = {
        "token_lifetime": whole(1079, "SFMC expires_in"),
        "sfmc_10006_rate": rate(0.0, "share of rowset calls answered 10006 (transient)"),
        "sfmc_clients": texts(DEFAULT_CLIENTS, "client_id -> client_secret of SFMC installed packages", secrets=True),
        "sfmc_event_definitions": objects(DEFAULT_EVENT_DEFINITIONS, "event definition key -> {fields, running}"),
        "sfmc_data_extensions": objects(
            DEFAULT_DATA_EXTENSIONS, "data extension external key -> {columns, primary_keys}", check_data_extensions
        ),
    }
    counters = ("sfmc_tokens_issued", "sfmc_calls", "sfmc_429", "sfmc_faults", "sfmc_10006")
    readers = ("journey_entries", "de_rows")
    banner = {"sfmc_auth_base": "SFMC auth base", "sfmc_rest_base": "SFMC REST base"}

    def links(self, url: str) -> dict[str, str]:
        extensions = self.sb.settings.sfmc_data_extensions
        return {
            "sfmc_auth_base": f"{url}/sfmc/auth",
            "sfmc_rest_base": f"{url}/sfmc/rest",
            "journeys": f"{url}/_sandbox/journeys",
            **{f"data_extension_{key}": f"{url}/_sandbox/data-extensions/{key}" for key in extensions},
        }

    def read(self, route: str) -> Response | None:
        if route == "journeys":
            return Response(200, {"journeys": copy.deepcopy(self.journey_entries)})
        if route.startswith("data-extensions/"):
            key = route.removeprefix("data-extensions/")
            if key not in self.sb.settings.sfmc_data_extensions:
                return Response(404, {"error": f"No data extension with external key '{key}'."})
            return Response(200, {"key": key, "rows": self.de_rows(key)})
        return None

    def reset(self) -> None:
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.journey_entries: list[dict[str, Any]] = []
        self.rows: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {}

    def expire_tokens(self) -> None:
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    def handle(self, req: Request) -> Response:
        sb = self.sb
        sb.pause()
        with sb.lock:
            if req.path == "/sfmc/auth/v2/token" and req.method == "POST":
                return self.token(req)
            if not req.path.startswith("/sfmc/rest/"):
                return SERVICE_NOT_FOUND
            token = req.bearer()
            if not token or self.tokens.get(token, 0.0) <= time.monotonic():
                return NOT_AUTHORIZED
            path = req.path.removeprefix("/sfmc/rest")
            route = self.route(req.method, path)
            if route is None:
                return SERVICE_NOT_FOUND
            sb.count("sfmc_calls")
            fault = sb.fault()
            if fault == "throttle":
                sb.count("sfmc_429")
                after = sb.settings.retry_after
                body = {"message": "Rate limit exceeded", "errorcode": 50100, "retryAfter": after}
                return Response(429, {**body, "documentation": ERROR_DOCS}, {"Retry-After": str(after)})
            if fault == "error":
                sb.count("sfmc_faults")
                if sb.turn("sfmc", 2) == 0:
                    return Response(500, {"message": "Internal Server Error", "errorcode": 0, "documentation": ""})
                body = {"message": "Service Unavailable", "errorcode": 50300, "documentation": ERROR_DOCS}
                return Response(503, body, {"Retry-After": str(sb.settings.retry_after)})
            return route(req, path)

    def route(self, method: str, path: str) -> Any:
        if method != "POST":
            return None
        if path == "/interaction/v1/events":
            return self.event
        if path == "/interaction/v1/async/events":
            return self.async_events
        if ROWSET.fullmatch(path):
            return self.rowset
        return None

    # Auth ------------------------------------------------------------------------------------------

    def token(self, req: Request) -> Response:
        """POST /v2/token with a JSON or a form body (Segment sends form fields, account_id as a string)."""
        try:
            fields = req.json if req.content_type != "application/x-www-form-urlencoded" else req.form
        except ValueError:
            fields = req.form
        if not isinstance(fields, dict):
            return _oauth_error(400, "invalid_request", "The body must be a JSON object or form fields.")
        missing = [name for name in ("grant_type", "client_id", "client_secret") if not fields.get(name)]
        if missing:
            return _oauth_error(400, "invalid_request", f"Missing required parameter: {missing[0]}.")
        if not all(isinstance(fields[name], str) for name in ("grant_type", "client_id", "client_secret")):
            return _oauth_error(400, "invalid_request", "grant_type, client_id and client_secret must be strings.")
        if fields["grant_type"] != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "Use grant_type client_credentials.")
        account_id = fields.get("account_id")
        if account_id is not None and (isinstance(account_id, bool) or not isinstance(account_id, str | int)):
            return _oauth_error(400, "invalid_request", "account_id must be the MID of a business unit.")
        if self.sb.settings.sfmc_clients.get(fields["client_id"]) != fields["client_secret"]:
            return Response(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "Invalid client ID. Use the client ID in Marketing Cloud Installed Packages.",
                    "error_uri": "https://developer.salesforce.com/docs",
                },
            )
        lifetime = self.sb.settings.token_lifetime
        token = secrets.token_urlsafe(32)
        self.tokens[token] = time.monotonic() + lifetime
        self.sb.count("sfmc_tokens_issued")
        scope = fields.get("scope")
        return Response(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": lifetime,
                "scope": scope if isinstance(scope, str) else SCOPE,
                "soap_instance_url": f"{self.sb.url}/sfmc/soap/",
                "rest_instance_url": f"{self.sb.url}/sfmc/rest/",
            },
        )

    # Journeys --------------------------------------------------------------------------------------

    def _definition(self, key: Any) -> tuple[dict[str, Any] | None, Response | None]:
        """The running event definition for a key (exact, case-sensitive), or the 400 SFMC answers."""
        definition = self.sb.settings.sfmc_event_definitions.get(key) if isinstance(key, str) else None
        if definition is None:
            return None, error(400, 30000, f"Event definition with key '{key}' does not exist.")
        if not definition.get("running", True):
            return None, error(400, 30000, f"No running journey uses event definition key '{key}'.")
        return definition, None

    def _unknown_field(self, definition: dict[str, Any], data: dict[str, Any]) -> str | None:
        fields = set(definition.get("fields", ()))
        for name in data:
            if name not in fields and name != "eventInstanceId":  # reserved: SFMC ignores the value
                return f"Data field '{name}' does not exist in the event definition's data extension."
        return None

    def _enter(self, key: str, contact: str, data: dict[str, Any], *, batch: bool) -> str:
        instance = str(uuid.uuid4())
        data = {name: value for name, value in data.items() if name != "eventInstanceId"}
        entry = {"eventDefinitionKey": key, "contactKey": contact, "data": data, "eventInstanceId": instance}
        self.journey_entries.append({**entry, "async": batch})
        return instance

    def event(self, req: Request, path: str) -> Response:
        """POST /interaction/v1/events: one contact into every journey listening on the key (§1.4)."""
        try:
            body = req.json
        except ValueError:
            return INVALID_MESSAGE
        if not isinstance(body, dict) or not isinstance(body.get("Data", {}), dict):
            return INVALID_MESSAGE
        for name in ("ContactKey", "EventDefinitionKey"):
            if body.get(name) in (None, ""):
                return error(400, 10002, f"{name} is required.")
        definition, refusal = self._definition(body["EventDefinitionKey"])
        if refusal:
            return refusal
        data = body.get("Data") or {}
        if message := self._unknown_field(definition, data):
            return error(400, 10000, message)
        instance = self._enter(body["EventDefinitionKey"], str(body["ContactKey"]), data, batch=False)
        return Response(201, {"eventInstanceId": instance})

    def async_events(self, req: Request, path: str) -> Response:
        """POST /interaction/v1/async/events: up to 100 members, each answered in request order."""
        try:
            body = req.json
        except ValueError:
            return INVALID_MESSAGE
        if not isinstance(body, dict):
            return INVALID_MESSAGE
        if body.get("eventDefinitionKey") in (None, ""):
            return error(400, 10002, "eventDefinitionKey is required.")
        members = body.get("members")
        if not isinstance(members, list) or not members:
            return error(400, 10002, "members is required.")
        if len(members) > ASYNC_MEMBER_LIMIT:
            return error(400, 10000, "Interaction Count Limit Exceeded")
        key = body["eventDefinitionKey"]
        definition, refusal = self._definition(key)
        if refusal:
            return refusal
        answers: list[dict[str, Any]] = []
        for member in members:
            contact = member.get("contactKey") if isinstance(member, dict) else None
            data = (member.get("data") or {}) if isinstance(member, dict) else {}
            if contact in (None, ""):
                answers.append({"contactKey": contact, "errorcode": 10002, "message": "contactKey is required."})
            elif not isinstance(data, dict):
                answers.append({"contactKey": contact, "errorcode": 10000, "message": "data must be an object."})
            elif message := self._unknown_field(definition, data):
                answers.append({"contactKey": contact, "errorcode": 10000, "message": message})
            else:
                instance = self._enter(key, str(contact), data, batch=True)
                answers.append({"contactKey": contact, "eventInstanceId": instance})
        failed = sum("errorcode" in answer for answer in answers)
        return Response(
            202, {"requestId": str(uuid.uuid4()), "count": len(answers), "notQueuedCount": failed, "members": answers}
        )

    # Data extensions -------------------------------------------------------------------------------

    def rowset(self, req: Request, path: str) -> Response:
        """POST /hub/v1/dataevents/key:{key}/rowset: upsert rows in order; the first bad row stops the rest (§1.5)."""
        key = ROWSET.fullmatch(path)["key"]
        extension = self.sb.settings.sfmc_data_extensions.get(key)
        if extension is None:
            return error(404, 30003, f"Data extension with external key '{key}' was not found.")
        unable = f"Unable to save rows for data extension ID {de_id(key)}"
        if self.sb.draw(self.sb.settings.sfmc_10006_rate):
            self.sb.count("sfmc_10006")
            return error(400, 10006, unable)  # the transient case: no additionalErrors (§1.8)
        try:
            rows = req.json
        except ValueError:
            return INVALID_MESSAGE
        if not isinstance(rows, list) or not all(is_row(row) for row in rows):
            return INVALID_MESSAGE
        columns: dict[str, str] = extension["columns"]
        saved = self.rows.setdefault(key, {})
        for row in rows:
            keys, values = row["keys"], row.get("values") or {}
            for column in extension["primary_keys"]:
                if keys.get(column) in (None, ""):
                    return error(400, 10000, f"Primary key '{column}' does not exist.")
            merged = {**keys, **values}
            for column in merged:
                if column not in columns:
                    return error(400, 10000, f"Column '{column}' does not exist in data extension '{key}'.")
            problems = [m for column, value in merged.items() if (m := type_error(column, columns[column], value))]
            if problems:
                details = [{"message": message, "errorcode": 10000, "documentation": ""} for message in problems]
                return error(400, 10006, unable, additionalErrors=details)
            pk = tuple(str(keys[column]) for column in extension["primary_keys"])
            saved[pk] = {**saved.get(pk, {}), **merged}
        return Response(200, rows)

    def de_rows(self, key: str) -> list[dict[str, Any]]:
        return [dict(row) for row in self.rows.get(key, {}).values()]


def _oauth_error(status: int, code: str, description: str) -> Response:
    return Response(status, {"error": code, "error_description": description})
