"""Fake Braze: POST /users/track with attributes, events and purchases, Bearer REST API keys, the object limit,
minor errors inside a 201, the "Valid data must be provided" 400, and rate-limit headers; profiles are kept by
external_id (or user alias) with their attributes, events and purchases.

Contract: /work/notes/braze-contract.md, from https://www.braze.com/docs/api/endpoints/user_data/post_user_track
and https://braze.com/docs/api/errors. Served under /braze, so the hub's rest_endpoint is `{sandbox}/braze`.
Braze publishes no list of minor-error texts: those not seen in the wild follow the style of the seen ones.
"""

from __future__ import annotations

import copy
import math
import re
import time
from datetime import date, datetime
from typing import Any

from integrations.sandbox.fake import Fake, texts, whole
from integrations.sandbox.wire import Request, Response

PATH = "/braze/users/track"
ARRAYS = ("attributes", "events", "purchases")  # Braze applies them in this order
MAX_BODY = 4 * 1024 * 1024  # 413 above, as the Appboy-era docs say
WINDOW = 3.0  # seconds of Braze's /users/track rate window: https://braze.com/docs/api/api_limits
IDENTIFIERS = ("external_id", "user_alias", "braze_id", "email", "phone")
# Property keys Braze refuses: https://www.braze.com/docs/api/objects_filters/event_object
RESERVED = {"time", "event_name"}
GENDERS = {"M", "F", "O", "N", "P"}
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
NO_IDENTIFIER = "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"
BAD_EMAIL = "The value provided for the 'email' field is not a valid email."
NO_VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
DEFAULT_KEYS = {"sandbox": "sandbox-braze-rest-key"}
DEFAULT_BLOCKED = ["null", "undefined", "none", "nil", "n/a"]


class Braze(Fake):
    """Braze profiles, their events and purchases, and the rate window; `sb.lock` guards every field."""

    service = "braze"
    settings = {
        "braze_api_keys": texts(DEFAULT_KEYS, "REST API key name -> key with the users.track permission", secrets=True),
        "braze_object_limit": whole(75, "objects per /users/track request, the three arrays together, before a 400"),
        "braze_rate_limit": whole(3000, "Braze /users/track requests per 3-second window before a 429"),
        "braze_blocked_external_ids": texts(DEFAULT_BLOCKED, "placeholder external_ids Braze refuses, in any case"),
    }
    counters = (
        "braze_calls",
        "braze_401",
        "braze_429",
        "braze_faults",
        "braze_lost_answers",  # 504s sent after the request was processed: the client's retry sends it again
        "braze_refused",  # whole requests refused with a 400 or 413
        "braze_minor_errors",
        "braze_objects",  # objects processed
    )
    readers = ("braze_users", "braze_events", "braze_purchases")
    banner = {"braze_rest_endpoint": "Braze REST endpoint"}

    def reset(self) -> None:
        self.profiles: dict[str, dict[str, Any]] = {}  # by external_id, or "<identifier>:<value>" without one
        self.tracked: dict[str, list[dict[str, Any]]] = {"events": [], "purchases": []}
        self.window: tuple[float, int] = (0.0, 0)  # the rate window's start (epoch seconds) and requests in it

    def links(self, url: str) -> dict[str, str]:
        reads = {f"braze_{name}": f"{url}/_sandbox/braze/{name}" for name in ("users", "events", "purchases")}
        return {"braze_rest_endpoint": f"{url}/braze", **reads}

    def read(self, route: str) -> Response | None:
        if route == "braze/users":
            return Response(200, {"users": copy.deepcopy(self.profiles)})
        if route in ("braze/events", "braze/purchases"):
            name = route.removeprefix("braze/")
            return Response(200, {name: copy.deepcopy(self.tracked[name])})
        return None

    def gauges(self) -> dict[str, int]:
        return {"braze_profiles": len(self.profiles)}

    def braze_users(self) -> dict[str, dict[str, Any]]:
        """Profiles by external_id (or "user_alias:<label>:<name>", "email:<address>" …), with their attributes."""
        return self.profiles

    def braze_events(self, user: str | None = None) -> list[dict[str, Any]]:
        """Custom events as received, oldest first, each with the key of its profile in `user`."""
        return [event for event in self.tracked["events"] if user is None or event["user"] == user]

    def braze_purchases(self, user: str | None = None) -> list[dict[str, Any]]:
        return [purchase for purchase in self.tracked["purchases"] if user is None or purchase["user"] == user]

    # Dispatch --------------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        sb = self.sb
        if req.path != PATH or req.method != "POST":
            return Response(404, {"message": "Invalid URL"})
        sb.pause()
        with sb.lock:
            # A missing, wrong or quoted key, or one of another instance, is the same 401 (§1.3).
            if req.bearer() not in sb.settings.braze_api_keys.values():
                sb.count("braze_401")
                return Response(401, {"message": "Invalid API Key"})
            sb.count("braze_calls")
            limits, over = self.rate_window()
            fault = sb.fault()
            if over or fault == "throttle":
                sb.count("braze_429")
                reset = limits["X-RateLimit-Reset"] if over else str(math.ceil(time.time() + sb.settings.retry_after))
                headers = {**limits, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
                return Response(429, {"message": "Too Many Requests"}, headers)
            kind = sb.turn("braze", 3) if fault == "error" else None
            if kind in (0, 1):
                sb.count("braze_faults")
                return gateway(502, "Bad Gateway") if kind == 0 else Response(503, {"message": "Service Unavailable"})
            answer = self.track(req)
            if kind == 2 and answer.status == 201:  # the answer times out after Braze took the data
                sb.count("braze_faults")
                sb.count("braze_lost_answers")
                return gateway(504, "Gateway Time-out")
            answer.headers.update(limits)
            return answer

    def rate_window(self) -> tuple[dict[str, str], bool]:
        """Count the call in the 3-second window: the rate-limit headers, and whether the call is over the limit."""
        now, limit = time.time(), self.sb.settings.braze_rate_limit
        start, used = self.window
        if now >= start + WINDOW:
            start, used = now, 0
        self.window = (start, used + 1)
        remaining = max(0, limit - used - 1)
        # Braze documents X-RateLimit-Reset in UTC epoch seconds (§4).
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)}
        return {**headers, "X-RateLimit-Reset": str(math.ceil(start + WINDOW))}, used >= limit

    # /users/track ----------------------------------------------------------------------------------

    def track(self, req: Request) -> Response:
        """Check the request whole, then each object; apply the valid ones and name the others (§3)."""
        if len(req.raw) > MAX_BODY:
            self.sb.count("braze_refused")
            return Response(413, {"message": "Request Entity Too Large"})
        try:
            body = req.json if req.content_type == "application/json" else None
        except ValueError:
            body = None
        arrays = [body.get(name, []) for name in ARRAYS] if isinstance(body, dict) else []
        if not arrays or not all(isinstance(objects, list) for objects in arrays):
            self.sb.count("braze_refused")
            return Response(400, {"message": "Bad Request"})
        total = sum(len(objects) for objects in arrays)
        if total > self.sb.settings.braze_object_limit:
            self.sb.count("braze_refused")
            return Response(400, {"message": "Max Input Length Exceeded"})
        errors: list[dict[str, Any]] = []
        valid: list[tuple[str, dict[str, Any]]] = []
        for name, objects in zip(ARRAYS, arrays, strict=True):
            for index, item in enumerate(objects):
                if problem := self.problem(name, item):
                    errors.append({"type": problem, "input_array": name, "index": index})
                else:
                    valid.append((name, item))
        if not valid:  # an empty request too: a fatal error processes nothing
            self.sb.count("braze_refused")
            return Response(400, {"message": NO_VALID_DATA, "errors": errors})
        for name, item in valid:
            self.apply(name, item)
        self.sb.count("braze_objects", len(valid))
        self.sb.count("braze_minor_errors", len(errors))
        # The counts leave out refused objects, and name only the arrays sent.
        processed = {f"{name}_processed": sum(kept == name for kept, _ in valid) for name in ARRAYS if name in body}
        return Response(201, {"message": "success", **processed, **({"errors": errors} if errors else {})})

    def problem(self, array: str, item: Any) -> str | None:
        """Braze's minor error for one object, or None when it takes the object (§2.3-2.6, §6)."""
        if not isinstance(item, dict):
            return f"'{array}' must contain objects"
        external_id, alias, email = item.get("external_id"), item.get("user_alias"), item.get("email")
        if not (alias or any(text(item.get(name)) for name in IDENTIFIERS if name != "user_alias")):
            return NO_IDENTIFIER
        if text(external_id) and external_id.lower() in self.sb.settings.braze_blocked_external_ids:
            return "provided external_id is blacklisted and disallowed"
        if alias and not (isinstance(alias, dict) and all(text(alias.get(k)) for k in ("alias_name", "alias_label"))):
            return "'user_alias' needs both alias_name and alias_label"
        if email is not None and not (isinstance(email, str) and EMAIL.fullmatch(email)):
            return BAD_EMAIL
        if array == "attributes":
            return attributes_problem(item)
        if array == "events" and not text(item.get("name")):
            return "'name' is required"
        if array == "events" and (item["name"].startswith("$") or len(item["name"]) > 255):
            return "'name' is not valid"
        if array == "purchases" and (problem := purchase_problem(item)):
            return problem
        return time_problem(item.get("time")) or properties_problem(item.get("properties"))

    def apply(self, array: str, item: dict[str, Any]) -> None:
        """Update or create the object's profile (unless it may only update), then keep what it says."""
        key, identity = identify(item)
        # An object with a user alias only updates an existing profile unless told otherwise (§2.3).
        update_only = item.get("_update_existing_only", "external_id" not in identity and "user_alias" in identity)
        if key not in self.profiles:
            if update_only is True:
                return
            self.profiles[key] = {**identity, "attributes": {}}
        fields = {k: v for k, v in item.items() if k not in identity and k != "_update_existing_only"}
        if array == "attributes":
            update(self.profiles[key]["attributes"], fields)
        else:
            self.tracked[array].append({"user": key, **fields})


def gateway(status: int, reason: str) -> Response:
    """What stands in front of Braze answers when it cannot reach it: HTML, not JSON."""
    return Response(status, f"<html><body><h1>{status} {reason}</h1></body></html>", content_type="text/html")


def text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def identify(item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The profile key and identifier of an object: external_id first, then user_alias, braze_id, email, phone."""
    if text(item.get("external_id")):
        return item["external_id"], {"external_id": item["external_id"]}
    if alias := item.get("user_alias"):
        return f"user_alias:{alias['alias_label']}:{alias['alias_name']}", {"user_alias": alias}
    name = next(name for name in IDENTIFIERS[2:] if text(item.get(name)))
    return f"{name}:{item[name]}", {name: item[name]}


def attributes_problem(item: dict[str, Any]) -> str | None:
    """Standard attributes in Braze's formats: https://www.braze.com/docs/api/objects_filters/user_attributes_object"""
    if dollar := next((key for key in item if key.startswith("$")), None):  # the operators' namespace ($add …)
        return f"'{dollar}' is not a valid attribute name"
    if item.get("gender") not in (None, *GENDERS):
        return "'gender' is not valid"
    dob = item.get("dob")
    if dob is not None and not (isinstance(dob, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", dob) and parses(dob)):
        return "'dob' is not valid"
    return None


def purchase_problem(item: dict[str, Any]) -> str | None:
    """https://www.braze.com/docs/api/objects_filters/purchase_object: quantity 1 to 100, an ISO 4217 currency."""
    for name in ("product_id", "currency", "price"):
        if item.get(name) is None:
            return f"'{name}' is required"
    if not text(item["product_id"]) or len(item["product_id"]) > 255:
        return "'product_id' is not valid"
    if not (isinstance(item["currency"], str) and re.fullmatch(r"[A-Z]{3}", item["currency"])):
        return "'currency' is not valid"
    if not is_number(item["price"]):
        return "'price' is not valid"
    quantity = item.get("quantity", 1)
    if not (isinstance(quantity, int) and not isinstance(quantity, bool) and 1 <= quantity <= 100):
        return "'quantity' is not valid"
    return None


def time_problem(value: Any) -> str | None:
    if value is None:
        return "'time' is required"
    return None if isinstance(value, str) and parses(value) else "'time' is not valid"


def properties_problem(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        return "'properties' is not valid"
    for key in value:
        why = "is empty" if not key else "starts with $" if key[0] == "$" else "is reserved" if key in RESERVED else ""
        if why:
            return f"'properties' is not valid: the key '{key}' {why}"
    return None


def parses(value: str) -> bool:
    """An ISO 8601 date or time (Braze takes a few other formats; the hub sends ISO 8601)."""
    try:
        (date if len(value) == 10 else datetime).fromisoformat(value)
    except ValueError:
        return False
    return True


def update(attributes: dict[str, Any], changes: dict[str, Any]) -> None:
    """Apply an attributes object: null removes, {"inc": n} adds, {"add"/"remove": […]} edit an array, else set."""
    for name, value in changes.items():
        current = attributes.get(name)
        if value is None:
            attributes.pop(name, None)
        elif isinstance(value, dict) and set(value) == {"inc"} and is_number(value["inc"]):
            attributes[name] = (current if is_number(current) else 0) + value["inc"]
        elif isinstance(value, dict) and value and set(value) <= {"add", "remove"}:
            kept = [x for x in (current if isinstance(current, list) else []) if x not in value.get("remove", [])]
            attributes[name] = kept + [x for x in value.get("add", []) if x not in kept]
        else:
            attributes[name] = value
