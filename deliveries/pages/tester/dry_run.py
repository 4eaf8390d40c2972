"""The Event Tester's dry run: routing, the mapped payload and the vendor's requests for an event, with no HTTP
call and nothing stored."""

from __future__ import annotations

import logging
from typing import Any

from deliveries.engine.routing import decide
from deliveries.engine.send import internal_error
from integrations.admin.exchanges import http_message, pretty_body
from integrations.models import Destination
from integrations.vendors import DeliveryError

log = logging.getLogger("cdphub.tester")


def dry_run_of(destination: Destination, payload: dict[str, Any]) -> dict[str, Any]:
    """Routing, the mapped payload and the vendor's requests for this event: no HTTP, nothing stored.

    Each value is there as data (payload, mapped_payload, a request's headers and body: secrets masked) and as
    the text the page shows (event, mapped, a request's text)."""
    payload = {k: v for k, v in payload.items() if k != "_timestamp"}
    decision = decide(destination, payload)
    out: dict[str, Any] = {
        "destination": destination,
        "send": decision.send,
        "reason": decision.reason,
        "event": pretty_body(payload),
        "payload": payload,
        "requests": [],
    }
    full = Destination.objects.get(pk=destination.pk)  # with its credentials: the vendor needs them to be built
    try:
        vendor = full.build_vendor()
        out["mapped_payload"] = vendor.map_event(payload)
        out["mapped"] = pretty_body(out["mapped_payload"])
        out["requests"] = [
            {
                "method": r.get("method", ""),
                "url": r.get("url", ""),
                "note": r.get("note", ""),
                "headers": r.get("headers") or {},
                "body": r.get("body"),
                "text": http_message(f"{r.get('method', '')} {r.get('url', '')}", r.get("headers"), r.get("body")),
            }
            for r in vendor.preview(payload)
        ]
    except DeliveryError as exc:
        out["error"] = {"code": exc.code, "message": exc.message, "hint": exc.hint}
    except Exception as exc:  # a bug in a vendor or a mapping that fails on this event: say so, do not crash
        log.exception("dry run of destination %s failed", destination.pk)
        error = internal_error(f"the {destination.vendor_class.label} vendor", exc)
        out["error"] = {
            "code": error.code,
            "message": error.message.replace("; the delivery is retried", ""),
            "hint": "",
        }
    return out
