"""Run test on a function's page: the code in the editor, saved or not, run once with an event from the Debugger
(or pasted; a webhook body for a source function) and the settings typed for the test, fetch calls recorded and
not sent unless asked. The answer: the outcome, the value or the error, the console, each exchange, and the events
a source function emits.

Secret values typed for a test are used for that run only and never sent back: not in the page, not in the JSON
(the runtime redacts them from the console and the exchanges; what the code returns or throws is redacted here).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from integrations.admin.exchanges import duration, pretty_body, render_exchanges, render_logs
from integrations.forms.function import error_position
from integrations.forms.function_settings import parse_value
from integrations.functions.declaration import secret_values
from integrations.functions.testing import run_test
from integrations.models import Function, Source
from integrations.vendors.http import REDACTED

# The event model by relation, not by import: integrations never imports deliveries.
EVENT_MODEL = Source._meta.get_field("events").related_model
EVENTS_SHOWN = 20
SAMPLE_EVENT = {
    "type": "track",
    "event": "Order Completed",
    "userId": "user-1",
    "properties": {"order_id": "A-1001", "total": 49.5, "currency": "EUR"},
    "context": {"traits": {"email": "ada@example.com"}},
}
SAMPLE_BODY = {"type": "customer.created", "user_id": "user-1", "email": "ada@example.com"}
OUTCOME_CLASSES = {"returned": "delivered", "would be retried": "retry", "would fail": "failed"}


def urls(model_admin: admin.ModelAdmin) -> list[URLPattern]:
    site = model_admin.admin_site
    return [
        path("run-test/", site.admin_view(lambda r: run_view(model_admin, r)), name="integrations_function_run_test"),
        path(
            "run-test/events/",
            site.admin_view(lambda r: events_view(model_admin, r)),
            name="integrations_function_test_events",
        ),
    ]


def panel_context(model_admin: admin.ModelAdmin, request: HttpRequest, function: Function | None) -> dict[str, Any]:
    """What the Run test panel of a function's page needs."""
    return {
        "run_test_url": reverse("admin:integrations_function_run_test"),
        "events_url": reverse("admin:integrations_function_test_events") if may_read_events(request) else "",
        "may_send": model_admin.has_change_permission(request, function),
        "function_kind": function.kind if function is not None else Function.Kind.DESTINATION,
        "declaration_json": json.dumps(function.settings if function is not None else []),
        "sample_event": json.dumps(SAMPLE_EVENT, indent=2),
        "sample_body": json.dumps(SAMPLE_BODY, indent=2),
    }


def may_read_events(request: HttpRequest) -> bool:
    """Events hold people's data: the picker lists them to those who may see them in the Debugger."""
    return request.user.has_perm("deliveries.view_event")


def events_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """The newest accepted events (or those matching ?q=: an event name's start, a user id, an email, a message
    id), each with its payload as destinations get it."""
    if not may_read_events(request) or not model_admin.has_view_or_change_permission(request):
        return JsonResponse({"error": "You may not view events."}, status=403)
    events = EVENT_MODEL.objects.filter(status="accepted").order_by("-received_at", "-id")
    query = request.GET.get("q", "").strip()
    if query:
        events = events.filter(
            Q(event__istartswith=query)
            | Q(type=query)
            | Q(user_id=query)
            | Q(anonymous_id=query)
            | Q(email__iexact=query)
            | Q(message_id=query)
        )
    fields = ("id", "type", "event", "user_id", "anonymous_id", "received_at", "payload")
    return JsonResponse({"events": [describe(event) for event in events.only(*fields)[:EVENTS_SHOWN]]})


def describe(event: Any) -> dict[str, Any]:
    who = event.user_id or event.anonymous_id or "anonymous"
    at = timezone.localtime(event.received_at).strftime("%Y-%m-%d %H:%M:%S")
    label = " · ".join(part for part in (f"{event.type} {event.event}".strip(), who, at) if part)
    return {"id": event.pk, "label": label, "payload": event.payload}


def run_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return JsonResponse({"errors": ["Run test takes a POST."]}, status=405)
    if not (model_admin.has_view_or_change_permission(request) or model_admin.has_add_permission(request)):
        return JsonResponse({"errors": ["You may not run functions."]}, status=403)
    send = request.POST.get("fetch") == "send"
    if send and not model_admin.has_change_permission(request):
        return refused(request, ["Only someone who may change functions can send fetch calls for real."], 403)
    kind = request.POST.get("kind", "")
    kind = kind if kind in Function.Kind.values else Function.Kind.DESTINATION
    declared = declaration(request.POST.get("declaration", ""))
    problems: list[str] = []
    plain, secrets = typed_values(request.POST, declared, problems)
    inputs: dict[str, Any] = {}
    if kind == Function.Kind.SOURCE:
        inputs["body"] = request.POST.get("body", "")
        inputs["headers"] = headers_of(request.POST.get("headers", ""), problems)
    else:
        inputs["event"] = event_of(request.POST.get("event", ""), problems)
    if problems:
        return refused(request, problems)
    code = request.POST.get("code", "")
    function = Function(name="Run test", slug="run-test", kind=kind, code=code, settings=declared)
    run = run_test(function, code=code, settings=plain, secrets=secrets, send=send, **inputs)
    data = redacted(run.as_json(), secret_values(secrets))
    error = data["error"]
    found = error_position(error["stack"] or error["message"]) if error else None
    data["marker"] = {"line": found[0], "column": found[1], "message": error["text"]} if found else None
    data["html"] = render_to_string("admin/integrations/function/run_result.html", result_context(data), request)
    return JsonResponse(data)


def refused(request: HttpRequest, problems: list[str], status: int = 400) -> JsonResponse:
    html = render_to_string("admin/integrations/function/run_result.html", {"problems": problems}, request)
    return JsonResponse({"errors": problems, "html": html}, status=status)


def declaration(text: str) -> list[dict[str, Any]]:
    """The settings the page's rows declare now (saved or not)."""
    try:
        items = json.loads(text) if text else []
    except json.JSONDecodeError:
        return []
    return (
        [i for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)] if isinstance(items, list) else []
    )


def typed_values(data: Any, declared: list[dict[str, Any]], problems: list[str]) -> tuple[dict, dict]:
    """Plain values as their declared types, secrets as typed (inputs setting.<name> and secret.<name>)."""
    plain: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for item in declared:
        name = item["name"]
        if item.get("sensitive"):
            value = data.get(f"secret.{name}", "").strip()
            if value:
                secrets[name] = value
            continue
        try:
            parsed = parse_value(str(item.get("type") or "string"), data.get(f"setting.{name}", ""))
        except ValueError as exc:
            problems.append(f"Setting {name}: {exc}.")
            continue
        if parsed is not None:
            plain[name] = parsed
    return plain, secrets


def event_of(text: str, problems: list[str]) -> dict[str, Any]:
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"The event is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).")
        return {}
    if not isinstance(event, dict):
        problems.append('The event must be a JSON object, e.g. {"type": "track", "event": "Signed Up"}.')
        return {}
    return event


def headers_of(text: str, problems: list[str]) -> dict[str, str]:
    """Webhook headers, one "Name: value" per line (Content-Type JSON unless given)."""
    headers = {"content-type": "application/json"}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            problems.append(f"Write each header as Name: value ({line.strip()!r} is not).")
            continue
        headers[name.strip().lower()] = value.strip()
    return headers


def redacted(value: Any, secrets: list[str]) -> Any:
    """`value` with every secret typed for the test replaced, wherever it is (what the code returned or threw)."""
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {redacted(k, secrets): redacted(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v, secrets) for v in value]
    return value


def result_context(data: dict[str, Any]) -> dict[str, Any]:
    outcome = data["outcome"]
    return {
        "run": data,
        "outcome_class": OUTCOME_CLASSES.get(outcome, "filtered"),
        "took": duration(data["duration_ms"]),
        "value": pretty_body(data["value"]) if data["value"] is not None else "",
        "logs": render_logs(data["logs"]),
        "exchanges": render_exchanges(data["exchanges"], open_all=True) if data["exchanges"] else "",
        "emitted": [pretty_body(event) for event in data["emitted"]],
    }
