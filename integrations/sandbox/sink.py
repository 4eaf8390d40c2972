"""A webhook sink: `POST|PUT /sink/<name>` answers `{"ok": true}`, or an injected 500/503/429."""

from __future__ import annotations

from integrations.sandbox.fake import Fake
from integrations.sandbox.wire import Request, Response


class Sink(Fake):
    """Stateless beyond the received log, which is where a test finds what the sink was sent."""

    service = "sink"
    counters = ("sink_calls", "sink_429", "sink_faults")
    banner = {"sink": "sink"}

    def links(self, url: str) -> dict[str, str]:
        return {"sink": f"{url}/sink/<name>"}

    def handle(self, req: Request) -> Response:
        sb = self.sb
        if not req.path.removeprefix("/sink/"):
            return Response(404, {"ok": False, "error": "Name the sink: /sink/<name>."})
        if req.method not in {"POST", "PUT"}:
            return Response(405, {"ok": False, "error": "The sink takes POST and PUT."}, {"Allow": "POST, PUT"})
        sb.pause()
        with sb.lock:
            sb.count("sink_calls")
            fault = sb.fault()
            retry_after = {"Retry-After": str(sb.settings.retry_after)}
            if fault == "throttle":
                sb.count("sink_429")
                return Response(429, {"ok": False, "error": "Too Many Requests"}, retry_after)
            if fault == "error":
                sb.count("sink_faults")
                if sb.turn("sink", 2) == 0:
                    return Response(500, {"ok": False, "error": "Internal Server Error"})
                return Response(503, {"ok": False, "error": "Service Unavailable"}, retry_after)
            return Response(200, {"ok": True})
