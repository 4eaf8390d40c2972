"""Vendor benchmark: the real worker delivering to the SFMC and Marketo fakes of the vendor sandbox.

    make bench                                  # runs bench/ingest.py, bench/deliver.py, then this
    .venv/bin/python bench/vendors.py --sfmc-events 5000 --marketo-events 6000 --json /tmp/vendors.json

Steps: a fresh temporary data dir (SQLite in WAL mode, the database broker; var/ is never touched) -> migrate
-> `manage.py sandbox` on a free loopback port (--latency-ms adds a vendor-like delay to each answer) -> two
sources, an `sfmc_journey` destination (APIEvent-welcome, identify events) and a `marketo` destination (lead
upsert on, "Order Completed" -> custom activity 100001), both at their vendor's default limits -> gunicorn and
`manage.py worker` as `make run` starts them -> then, per vendor:

  1. backlog   POST /v1/batch (100 events each) of --sfmc-events identify events / --marketo-events track
               events for --marketo-leads distinct people, then wait until every delivery is delivered
               -> deliveries/s from the first POST to the last delivery, HTTP calls made, token calls
  2. latency   offer --rate events/s to /v1/track for --latency-seconds (open loop)
               -> p50 / p95 of Delivery.latency_ms (delivered_at - the event's receivedAt)

Checks: every delivery ends `delivered` (none failed or stuck), no traceback in the logs, SFMC fetched one
token, and Marketo at its default limit (45 calls per 20 s) never got a 606 or a 615 from the sandbox, which
enforces Marketo's real limits (100 calls per 20 s, 10 concurrent); the densest 20 s window is reported.
Exit status: 0 = measured; 1 = the hub misbehaved; 2 = the benchmark could not run.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import requests
from harness import BenchError, SandboxRun, manage, percentile, start_web, start_worker

BATCH = 100
P95_GOAL_MS = 250.0
SOURCES = {"sfmc": "wk_bench_sfmc", "marketo": "wk_bench_marketo"}
SFMC_CLIENT = {"client_id": "sandbox-sfmc-client", "client_secret": "sandbox-sfmc-secret"}
MARKETO_CLIENT = {"client_id": "sandbox-marketo-client", "client_secret": "sandbox-marketo-secret"}
MARKETO_WINDOW = 20.0
MARKETO_LIMIT = 100


def auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def identify(n: int, run: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": f"user-{run}-{n}",
        "messageId": f"sfmc-{run}-{n}",
        "traits": {"email": f"person{n}@example.com", "firstName": "Ada", "lastName": f"N{n}", "plan": "pro"},
    }


def order(n: int, run: str, leads: int) -> dict[str, Any]:
    person = n % leads
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{run}-{person}",
        "messageId": f"mkto-{run}-{n}",
        "context": {"traits": {"email": f"buyer{person}-{run}@example.com", "firstName": "Grace"}},
        "properties": {"order_id": f"o-{n}", "total": 49.5, "currency": "USD"},
    }


@dataclass
class Bench(SandboxRun):
    def sandbox(self) -> dict[str, Any]:
        return requests.get(self.sandbox_url + "/_sandbox", timeout=10).json()

    def received(self, service: str) -> list[dict[str, Any]]:
        url = f"{self.sandbox_url}/_sandbox/received?service={service}&limit=20000"
        return requests.get(url, timeout=60).json()["received"]

    # ---- set-up

    def start(self) -> None:
        manage(self.env, "migrate", "--noinput", "-v0")
        self.start_sandbox(self.args.latency_ms)
        base = self.sandbox_url
        workspace = {
            "sources": [
                {"slug": slug, "name": slug, "kind": "http", "write_key": key} for slug, key in SOURCES.items()
            ],
            "destinations": [
                {
                    "slug": "bench-sfmc",
                    "name": "Bench SFMC journey",
                    "vendor": "sfmc_journey",
                    "sources": ["sfmc"],
                    "config": {
                        "auth_base_url": base + "/sfmc/auth",
                        "rest_base_url": base + "/sfmc/rest",
                        "event_definition_key": "APIEvent-welcome",
                    },
                    "credentials": SFMC_CLIENT,
                },
                {
                    "slug": "bench-marketo",
                    "name": "Bench Marketo",
                    "vendor": "marketo",
                    "sources": ["marketo"],
                    "config": {
                        "base_url": base + "/marketo",
                        "upsert_leads": True,
                        "activities": {
                            "Order Completed": {
                                "activity_type_id": 100001,
                                "primary_attribute": "properties.order_id",
                                "attributes": {"total": "properties.total", "currency": "properties.currency"},
                            }
                        },
                    },
                    "credentials": MARKETO_CLIENT,
                },
            ],
        }
        path = self.data_dir / "workspace.json"
        path.write_text(json.dumps(workspace))
        manage(self.env, "import_workspace", str(path))
        self.children.append(start_web(self.data_dir, self.env, self.web_url))
        self.children.append(start_worker(self.data_dir, self.env))

    # ---- phases

    def backlog(self, vendor: str, slug: str, events: list[dict[str, Any]]) -> None:
        session = requests.Session()
        headers = {"Content-Type": "application/json", "Authorization": auth(SOURCES[vendor])}
        started = time.monotonic()
        for first in range(0, len(events), BATCH):
            body = orjson.dumps({"batch": events[first : first + BATCH]})
            response = session.post(self.web_url + "/v1/batch", data=body, headers=headers, timeout=30)
            if response.status_code != 200:
                raise BenchError(f"/v1/batch answered {response.status_code}: {response.text[:300]}")
        posted = time.monotonic() - started
        self.wait_delivered(slug, len(events))
        took = time.monotonic() - started
        self.results[vendor] = {
            "events": len(events),
            "seconds": round(took, 2),
            "deliveries_per_second": round(len(events) / took, 1),
            "posting_seconds": round(posted, 2),
        }
        print(f"{vendor} backlog: {len(events):,} delivered in {took:.1f} s = {len(events) / took:,.0f}/s", flush=True)

    def wait_delivered(self, slug: str, count: int) -> None:
        last, last_change = -1, time.monotonic()
        while True:
            statuses = self.statuses(slug)
            done = statuses.get("delivered", 0)
            if statuses.get("failed"):
                failed = self.query(
                    "SELECT d.error_code, d.error_message FROM deliveries_delivery d JOIN integrations_destination t "
                    "ON t.id = d.destination_id WHERE t.slug = ? AND d.status = 'failed' LIMIT 3",
                    slug,
                )
                self.problems.append(f"{slug}: {statuses['failed']} deliveries failed, e.g. {failed}")
                return
            if done >= count:
                return
            if done != last:
                last, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > self.args.stall:
                stuck = f"{slug}: stuck at {done:,}/{count:,} delivered for {self.args.stall:.0f} s: {statuses}"
                raise BenchError(stuck)
            time.sleep(0.1)

    def latency(self, vendor: str, slug: str, make: Any) -> None:
        """Open loop: one event every 1/rate s from a few sender threads, then the delivered latencies."""
        total = int(self.args.rate * self.args.latency_seconds)
        before = self.statuses(slug).get("delivered", 0)
        first_id = (self.query("SELECT COALESCE(MAX(id), 0) FROM deliveries_delivery") or [(0,)])[0][0]
        errors: list[str] = []
        start = time.monotonic() + 0.2
        headers = {"Content-Type": "application/json", "Authorization": auth(SOURCES[vendor])}

        def send(offset: int, step: int) -> None:
            session = requests.Session()
            for n in range(offset, total, step):
                delay = start + n / self.args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                event = make(100_000 + n)
                response = session.post(f"{self.web_url}/v1/{event['type']}", data=orjson.dumps(event), headers=headers)
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")

        threads = [threading.Thread(target=send, args=(i, 8)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.problems.append(f"{vendor} latency: {len(errors)} requests refused, e.g. {errors[0]}")
        self.wait_delivered(slug, before + total)
        latencies = [
            row[0]
            for row in self.query(
                "SELECT d.latency_ms FROM deliveries_delivery d JOIN integrations_destination t "
                "ON t.id = d.destination_id WHERE t.slug = ? AND d.id > ? AND d.status = 'delivered'",
                slug,
                first_id,
            )
        ]
        if not latencies:
            raise BenchError(f"{vendor} latency: nothing delivered")
        p50, p95 = percentile(latencies, 0.50), percentile(latencies, 0.95)
        self.results[vendor] |= {"rate": self.args.rate, "latency_p50_ms": p50, "latency_p95_ms": p95}
        if vendor == "sfmc":
            note = f"goal p95 <= {P95_GOAL_MS:.0f} ms: {'met' if p95 <= P95_GOAL_MS else 'missed'}"
        else:  # Marketo's default limit, 45 calls per 20 s, sets the pace: events wait for a call to ride in
            note = "paced by the 45 calls / 20 s limit"
        print(f"{vendor} latency at {self.args.rate:g} ev/s: p50 {p50:.0f} ms, p95 {p95:.0f} ms ({note})", flush=True)

    def vendor_calls(self) -> None:
        state = self.sandbox()
        counters = state.get("counters", {})
        sfmc = [r for r in self.received("sfmc") if "/sfmc/rest/" in r["path"]]
        self.results["sfmc"] |= {
            "rest_calls": len(sfmc),
            "async_batch_calls": sum("/async/" in r["path"] for r in sfmc),
            "tokens_issued": counters.get("sfmc_tokens_issued", 0),
            "sandbox_429": sum(r["status"] == 429 for r in sfmc),
        }
        if counters.get("sfmc_tokens_issued", 0) != 1:
            self.problems.append(f"SFMC: {counters.get('sfmc_tokens_issued')} tokens fetched, expected 1")
        calls = sorted(_epoch(r["at"]) for r in self.received("marketo") if "/marketo/rest/" in r["path"])
        densest = max((_count_within(calls, i, MARKETO_WINDOW) for i in range(len(calls))), default=0)
        self.results["marketo"] |= {
            "rest_calls": len(calls),
            "tokens_issued": counters.get("marketo_tokens_issued", 0),
            "densest_20s_calls": densest,
            "sandbox_606": counters.get("marketo_606", 0),
            "sandbox_615": counters.get("marketo_615", 0),
        }
        print(
            f"sfmc: {len(sfmc)} REST calls ({self.results['sfmc']['async_batch_calls']} async batches), "
            f"{self.results['sfmc']['tokens_issued']} token(s); marketo: {len(calls)} REST calls, densest 20 s window "
            f"{densest} calls, 606: {counters.get('marketo_606', 0)}, 615: {counters.get('marketo_615', 0)}",
            flush=True,
        )
        if counters.get("marketo_606", 0) or counters.get("marketo_615", 0):
            self.problems.append("Marketo answered 606/615 at the default limits")
        if densest > MARKETO_LIMIT:
            self.problems.append(f"Marketo: {densest} calls within 20 s (limit {MARKETO_LIMIT})")


def _epoch(value: Any) -> float:
    return value if isinstance(value, int | float) else datetime.fromisoformat(str(value)).timestamp()


def _count_within(times: list[float], i: int, window: float) -> int:
    j = i
    while j < len(times) and times[j] - times[i] < window:
        j += 1
    return j - i


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sfmc-events", type=int, default=5000, help="SFMC backlog size (5,000)")
    p.add_argument("--marketo-events", type=int, default=6000, help="Marketo backlog size (6,000)")
    p.add_argument("--marketo-leads", type=int, default=1500, help="distinct people of the Marketo events (1,500)")
    p.add_argument("--rate", type=float, default=20, help="events/s offered in each latency phase (20)")
    p.add_argument("--latency-seconds", type=float, default=15, help="length of each latency phase (15)")
    p.add_argument("--latency-ms", type=int, default=0, help="delay the sandbox adds to each answer (0)")
    p.add_argument("--stall", type=float, default=90, help="give up when nothing is delivered for this long (90 s)")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir (logs included)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args, Path(tempfile.mkdtemp(prefix="cdphub-bench-vendors-")))

    def phases() -> None:
        bench.start()
        run = bench.run
        bench.backlog("sfmc", "bench-sfmc", [identify(n, run) for n in range(args.sfmc_events)])
        bench.latency("sfmc", "bench-sfmc", lambda n: identify(n, run))
        leads = args.marketo_leads
        bench.backlog("marketo", "bench-marketo", [order(n, run, leads) for n in range(args.marketo_events)])
        bench.latency("marketo", "bench-marketo", lambda n: order(n, run, leads))
        bench.vendor_calls()
        bench.check_logs()

    return bench.execute(phases)


if __name__ == "__main__":
    sys.exit(main())
