"""Fake Zendesk Support: tickets (honouring Idempotency-Key) and create-or-update of end users, API-token auth.

Served under /zendesk, so the hub's Zendesk `base_url` is `{sandbox}/zendesk` and the paths are /zendesk/api/v2/…;
`{sandbox}/zendesk/<name>` stands for a subdomain with no help desk (Zendesk's 404), to try a wrong subdomain.
Shapes: https://developer.zendesk.com/api-reference/ and the recorded bodies in tests/fixtures/vendors/zendesk/.
A server-error fault is in turn a 500, a 503 with Retry-After, or a 504 after the write: the answer lost on its way
back, which is what the Idempotency-Key is for.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import time
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

import orjson

from integrations.sandbox.fake import Fake, texts, whole
from integrations.sandbox.wire import Request, Response

API = "/zendesk/api/v2"
ROUTES = {
    ("POST", "tickets"): "create_ticket",
    ("GET", "tickets"): "list_tickets",
    ("POST", "users/create_or_update"): "upsert_user",
}
FIRST_USER_ID = 1001  # agents are numbered below, in the order they first call
WRITE_ONLY = {"skip_verify_email"}  # instructions for this call, not fields Zendesk keeps
DEFAULT_ACCOUNTS = {"sandbox-agent@example.com": "sandbox-zendesk-token"}

# The exact 37 bytes Zendesk answers for a bad email or token.
UNAUTHENTICATED = Response(
    401, {"error": "Couldn't authenticate you"}, {"WWW-Authenticate": 'Basic realm="Web Password"'}
)
FORBIDDEN = Response(
    403,
    {
        "error": "Forbidden",
        "message": "You do not have access to this page. Please contact the account owner of this help desk for "
        "further help.",
    },
)
NOT_FOUND = Response(404, {"error": "InvalidEndpoint", "description": "Not found"})
IDEMPOTENCY_MISMATCH = Response(
    400,
    {"error": "IdempotentRequestError", "description": "Request parameters don't match the given idempotency key"},
)
HTML = "text/html; charset=utf-8"


def no_help_desk(name: str) -> Response:
    message = (
        "There is no help desk configured at this address. This means that the address is available and that you "
        "can claim it at http://www.zendesk.com/signup"
    )
    return Response(404, {"error": {"title": f"No help desk at {name}.zendesk.com", "message": message}})


def record_invalid(field: str, description: str, error: str) -> Response:
    details = {field: [{"description": description, "error": error}]}
    return Response(422, {"error": "RecordInvalid", "description": "Record validation errors", "details": details})


def parameter_missing(name: str) -> Response:
    return Response(400, {"error": "ParameterMissing", "description": f"Parameter {name} is required"})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _same(a: Any, b: Any) -> bool:
    """Emails and external ids match whatever their case, as Zendesk matches them."""
    return isinstance(a, str) and isinstance(b, str) and a.strip().lower() == b.strip().lower() != ""


class Zendesk(Fake):
    """One help desk: its tickets, end users and remembered idempotency keys; `sb.lock` guards every field."""

    service = "zendesk"
    settings = {
        "zendesk_accounts": texts(DEFAULT_ACCOUNTS, "agent email -> API token (Basic email/token:token)", secrets=True),
        "zendesk_agents": texts([], "account emails that are agents, not admins: create_or_update answers them 403"),
        "zendesk_user_upserts_per_second": whole(0, "create_or_update calls a second before 429 (Zendesk: 1; 0: off)"),
        "zendesk_idempotency_ttl": whole(7200, "seconds an Idempotency-Key keeps its ticket (Zendesk: about 2 h)"),
    }
    counters = ("zendesk_calls", "zendesk_401", "zendesk_429", "zendesk_faults", "zendesk_idempotent_hits")
    readers = ("zendesk_tickets", "zendesk_users")
    banner = {"zendesk_base": "Zendesk base"}

    def links(self, url: str) -> dict[str, str]:
        return {
            "zendesk_base": f"{url}/zendesk",
            "zendesk_tickets": f"{url}/_sandbox/zendesk/tickets",
            "zendesk_users": f"{url}/_sandbox/zendesk/users",
        }

    def read(self, route: str) -> Response | None:
        if route == "zendesk/tickets":
            return Response(200, {"tickets": copy.deepcopy(self.tickets)})
        if route == "zendesk/users":
            return Response(200, {"users": copy.deepcopy(self.users)})
        return None

    def zendesk_tickets(self) -> list[dict[str, Any]]:
        return self.tickets

    def zendesk_users(self) -> list[dict[str, Any]]:
        return self.users

    def gauges(self) -> dict[str, int]:
        """Tickets beyond the first with one external_id: retries under an Idempotency-Key keep this at 0."""
        made = Counter(ticket["external_id"] for ticket in self.tickets if ticket["external_id"])
        return {"zendesk_duplicate_tickets": sum(count - 1 for count in made.values())}

    def reset(self) -> None:
        self.tickets: list[dict[str, Any]] = []
        self.users: list[dict[str, Any]] = []
        self.agents: dict[str, int] = {}  # account email -> its user id, the submitter of its tickets
        self.keys: dict[str, tuple[bytes, float, Response]] = {}  # Idempotency-Key -> (body digest, expiry, answer)
        self.upserts: deque[float] = deque()  # monotonic times of the create_or_update calls of the last second

    # Dispatch --------------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        sb = self.sb
        if not req.path.startswith(f"{API}/"):
            return no_help_desk(req.path.removeprefix("/zendesk/").split("/")[0] or "zendesk")
        sb.pause()
        with sb.lock:
            sb.count("zendesk_calls")
            # Both .json and bare paths are served: the docs drop .json, older clients still send it.
            name = ROUTES.get((req.method, req.path.removeprefix(f"{API}/").removesuffix(".json")))
            if name is None:
                return NOT_FOUND  # before the credentials, as Zendesk does
            account = self.account(req)
            if account is None:
                sb.count("zendesk_401")
                return UNAUTHENTICATED
            fault = sb.fault()
            if fault == "throttle":
                return self.throttled("Number of allowed API requests per minute exceeded", sb.settings.retry_after)
            if fault == "error":
                return self.server_error(req, name, account)
            return getattr(self, name)(req, account)

    def server_error(self, req: Request, route: str, account: str) -> Response:
        """In turn a 500, a 503 with Retry-After, or a 504 after the call did its work (the answer lost on its way)."""
        self.sb.count("zendesk_faults")
        turn = self.sb.turn("zendesk", 3)
        if turn == 0:
            return Response(500, "<html><body><h1>500 Internal Server Error</h1></body></html>", content_type=HTML)
        if turn == 1:
            return Response(
                503, "Service Unavailable", {"Retry-After": str(self.sb.settings.retry_after)}, "text/plain"
            )
        getattr(self, route)(req, account)
        return Response(504, "<html><body><h1>504 Gateway Time-out</h1></body></html>", content_type=HTML)

    def account(self, req: Request) -> str | None:
        """The account email of a valid `Basic base64(email/token:token)` header, in lower case; else None."""
        scheme, _, encoded = req.headers.get("authorization", "").partition(" ")
        try:
            login, _, token = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        email = login.removesuffix("/token").strip().lower()
        tokens = {name.lower(): value for name, value in self.sb.settings.zendesk_accounts.items()}
        # Email and password (no /token) was switched off in 2026: only API tokens sign in.
        ok = scheme.lower() == "basic" and login.endswith("/token") and bool(token) and tokens.get(email) == token
        return email if ok else None

    def throttled(self, message: str, wait: int) -> Response:
        """A 429 with Retry-After; its body is JSON or, every other time, plain text, as Zendesk's can be."""
        self.sb.count("zendesk_429")
        if self.sb.turn("zendesk_429", 2):
            return Response(429, message, {"Retry-After": str(wait)}, "text/plain")
        return Response(429, {"error": "APIRateLimitExceeded", "description": message}, {"Retry-After": str(wait)})

    def body(self, req: Request, wrapper: str) -> dict[str, Any] | None:
        """The object inside {"<wrapper>": {...}}, or None when the body has none."""
        try:
            data = req.json
        except ValueError:
            return None
        inner = data.get(wrapper) if isinstance(data, dict) else None
        return inner if isinstance(inner, dict) else None

    # Tickets ---------------------------------------------------------------------------------------

    def create_ticket(self, req: Request, account: str) -> Response:
        """POST /api/v2/tickets; a key seen with the same body answers its first ticket again, for about 2 hours."""
        ticket = self.body(req, "ticket")
        if ticket is None:
            return parameter_missing("ticket")
        key = req.headers.get("idempotency-key", "")
        digest = hashlib.sha256(orjson.dumps(ticket, option=orjson.OPT_SORT_KEYS)).digest()
        digest_then, expiry, first = self.keys.get(key, (b"", 0.0, None))
        if key and first is not None and expiry > time.monotonic():
            if digest_then != digest:
                return IDEMPOTENCY_MISMATCH
            self.sb.count("zendesk_idempotent_hits")
            return Response(first.status, copy.deepcopy(first.body), {**first.headers, "x-idempotency-lookup": "hit"})
        answer = self.new_ticket(ticket, account)
        if key and answer.status == 201:  # only a made ticket is remembered: a 422 is answered afresh
            answer.headers["x-idempotency-lookup"] = "miss"
            self.keys[key] = (digest, time.monotonic() + self.sb.settings.zendesk_idempotency_ttl, answer)
        return answer

    def new_ticket(self, ticket: dict[str, Any], account: str) -> Response:
        comment = ticket.get("comment") if isinstance(ticket.get("comment"), dict) else {}
        description = comment.get("body") or comment.get("html_body")
        if not isinstance(description, str) or not description.strip():
            return record_invalid("base", "Description: cannot be blank", "BlankValue")
        requester_id = self.requester(ticket, account)
        if isinstance(requester_id, Response):
            return requester_id
        ticket_id, now, public = len(self.tickets) + 1, _now(), comment.get("public", True) is not False
        url = f"{self.sb.url}{API}/tickets/{ticket_id}.json"
        made = {
            "url": url,
            "id": ticket_id,
            "external_id": ticket.get("external_id"),
            "via": {"channel": "api"},
            "created_at": now,
            "updated_at": now,
            "type": ticket.get("type"),
            "subject": ticket.get("subject"),
            "raw_subject": ticket.get("subject"),
            "description": description,
            "priority": ticket.get("priority"),
            "status": ticket.get("status") or "new",
            "requester_id": requester_id,
            "submitter_id": self.agent_id(account),
            "assignee_id": None,
            "tags": list(ticket.get("tags") or []),
            "custom_fields": list(ticket.get("custom_fields") or []),
            "is_public": public,
        }
        self.tickets.append(made)
        event = {"id": 1, "type": "Comment", "body": description, "public": public}
        audit = {"id": ticket_id, "ticket_id": ticket_id, "created_at": now, "author_id": made["submitter_id"]}
        return Response(201, {"ticket": made, "audit": {**audit, "events": [event]}}, {"Location": url})

    def requester(self, ticket: dict[str, Any], account: str) -> int | Response:
        """The requester's user id: given, a known user's by email (left as it is), a new user, or the caller."""
        if isinstance(ticket.get("requester_id"), int):
            return ticket["requester_id"]
        requester = ticket.get("requester")
        if not isinstance(requester, dict):
            return self.agent_id(account)
        known = self.find(requester.get("email"), None)
        if known is not None:
            return known["id"]
        if not isinstance(requester.get("name"), str) or not requester["name"].strip():
            return record_invalid("requester", "Requester: Name: is too short (minimum is 1 character)", "TooShort")
        return self.add_user({key: requester.get(key) for key in ("name", "email", "locale_id") if key in requester})

    def list_tickets(self, req: Request, account: str) -> Response:
        """GET /api/v2/tickets[?external_id=]: how a ticket is found again after its idempotency key has expired."""
        wanted = req.query.get("external_id")
        found = [t for t in self.tickets if wanted is None or t["external_id"] == wanted]
        return Response(200, {"tickets": found, "next_page": None, "previous_page": None, "count": len(found)})

    # Users -----------------------------------------------------------------------------------------

    def upsert_user(self, req: Request, account: str) -> Response:
        """POST /api/v2/users/create_or_update: 201 for a new end user, 200 for the one matched by email or id."""
        if account in {email.lower() for email in self.sb.settings.zendesk_agents}:
            return FORBIDDEN
        limit, now = self.sb.settings.zendesk_user_upserts_per_second, time.monotonic()
        while self.upserts and self.upserts[0] <= now - 1:
            self.upserts.popleft()
        if limit and len(self.upserts) >= limit:
            return self.throttled("Number of allowed create or update user requests per second exceeded", 1)
        self.upserts.append(now)
        user = self.body(req, "user")
        if user is None:
            return parameter_missing("user")
        fields = {key: value for key, value in user.items() if key not in WRITE_ONLY}
        known = self.find(user.get("email"), user.get("external_id"))
        if known is not None:
            # The email is written on create only (an update adds a secondary email, which this fake leaves out).
            known.update({key: value for key, value in fields.items() if key != "email"}, updated_at=_now())
            return Response(200, {"user": known})
        if not isinstance(user.get("name"), str) or not user["name"].strip():
            return record_invalid("name", "Name: is too short (minimum is 1 characters)", "TooShort")
        user_id = self.add_user(fields)
        return Response(201, {"user": self.users[-1]}, {"Location": f"{self.sb.url}{API}/users/{user_id}.json"})

    def find(self, email: Any, external_id: Any) -> dict[str, Any] | None:
        """The end user with this email, else with this external_id (Zendesk leaves open which wins if both match)."""
        by_email = [user for user in self.users if _same(user.get("email"), email)]
        by_id = [user for user in self.users if _same(user.get("external_id"), external_id)]
        return (by_email or by_id or [None])[0]

    def add_user(self, fields: dict[str, Any]) -> int:
        user_id, now = FIRST_USER_ID + len(self.users), _now()
        base = {"id": user_id, "url": f"{self.sb.url}{API}/users/{user_id}.json", "name": None, "email": None}
        defaults = {"external_id": None, "phone": None, "role": "end-user", "verified": False, "active": True}
        self.users.append({**base, **defaults, "user_fields": {}, "created_at": now, "updated_at": now, **fields})
        return user_id

    def agent_id(self, account: str) -> int:
        return self.agents.setdefault(account, len(self.agents) + 1)
