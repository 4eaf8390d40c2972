"""Admin speed benchmark: every admin page a marketer opens, timed against 1 million events and 2 million
deliveries in SQLite.

    make bench                               # runs bench/ingest.py, deliver.py, vendors.py, then this
    .venv/bin/python bench/admin.py --events 100000 --deliveries 200000      # a quick run
    .venv/bin/python bench/admin.py --reseed --json /tmp/admin.json

Steps: a data dir of its own (CDPHUB_DATA_DIR, default var/bench-admin; the hub's var/cdphub.sqlite3 is never
touched) -> when the seeded database there does not match the scale asked for (or is older than --max-age
hours, or --reseed): a fresh database, `migrate`, 4 sources and 6 destinations (SFMC journeys, Marketo, webhooks,
Segment; credentials set through the model, so encrypted), then events spread over the last 30 days and their
deliveries written with executemany in one transaction (indexes dropped first and rebuilt after) -> the
delivery rollups rebuilt by deliveries.engine.rollups.rebuild() and the schema rollup folded by
deliveries.engine.schema_fold.fold()
(the hub's own code, timed) -> a database that is reused is topped up to now first (the events it missed since
its seed, the same number of the oldest removed), so windows like "last 10 minutes" hold data -> each page
timed with django.test.Client in this process, as a superuser and as a member of the Marketer group: one
warm-up, then --runs GETs (median and max), and one more run with the queries captured.

Budget: every page's median under 500 ms. Exit status: 0 = measured, every page within budget; 1 = the hub
misbehaved (a page over budget, an error or an unexpected status); 2 = the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import sqlite3
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from cpu import machine_busy
from harness import ROOT, BenchError, note_scrubbed, print_problems, print_table

DEFAULT_DATA_DIR = ROOT / "var" / "bench-admin"
SEED_VERSION = 1  # bump when the generated data changes shape: a stored seed of another version is replaced
BUDGET_MS = 500.0
DAYS = 30
EPOCH = datetime(1970, 1, 1)


# ---------------------------------------------------------------------------------------------- workspace

SOURCES = [
    # slug, name, kind, share of events, library
    ("website", "Website", "http", 0.55, ("analytics.js", "5.2.0")),
    ("mobile-app", "Mobile app", "http", 0.30, ("analytics-ios", "4.1.8")),
    ("customerio", "Customer.io", "customerio", 0.09, ("customerio-webhooks", "1")),
    ("forms", "Form tool", "generic", 0.06, ("webhook", "1")),
]
SFMC = {
    "auth_base_url": "https://mc-bench.auth.marketingcloudapis.com",
    "rest_base_url": "https://mc-bench.rest.marketingcloudapis.com",
}
SFMC_SECRET = {"client_id": "bench-sfmc-client", "client_secret": "bench-sfmc-secret"}
DESTINATIONS: list[dict[str, Any]] = [
    {
        "slug": "warehouse",
        "name": "Data warehouse (webhook)",
        "vendor": "webhook",
        "config": {"url": "https://ingest.warehouse.example.com/events", "batch_size": 50},
        "credentials": {"signing_secret": "whsec_YmVuY2gtd2FyZWhvdXNlLXNlY3JldA=="},
        "share": 0.92,  # nearly every event: the busiest destination
    },
    {
        "slug": "welcome-journey",
        "name": "Welcome journey (SFMC)",
        "vendor": "sfmc_journey",
        "config": {**SFMC, "event_definition_key": "APIEvent-welcome"},
        "credentials": SFMC_SECRET,
        "filter": {"types": ["identify"], "events": [], "condition": None},
        "share": 0.16,
    },
    {
        "slug": "order-journey",
        "name": "Order journey (SFMC)",
        "vendor": "sfmc_journey",
        "config": {**SFMC, "event_definition_key": "APIEvent-order-completed"},
        "credentials": SFMC_SECRET,
        "filter": {"types": ["track"], "events": ["Order Completed"], "condition": None},
        "mapping": {"ContactKey": "userId", "Data": {"email": "context.traits.email", "total": "properties.total"}},
        "share": 0.16,
    },
    {
        "slug": "marketo",
        "name": "Marketo",
        "vendor": "marketo",
        "config": {"base_url": "https://123-ABC-456.mktorest.com", "lookup_field": "email", "upsert_leads": True},
        "credentials": {"client_id": "bench-marketo-client", "client_secret": "bench-marketo-secret"},
        "share": 0.30,
    },
    {
        "slug": "crm",
        "name": "CRM (webhook)",
        "vendor": "webhook",
        "config": {"url": "https://crm.example.com/hooks/cdp"},
        "credentials": {"headers": {"X-Api-Key": "bench-crm-api-key"}},
        "share": 0.26,
    },
    {
        "slug": "segment",
        "name": "Segment mirror",
        "vendor": "segment",
        "config": {"base_url": "https://api.segment.io"},
        "credentials": {"write_key": "bench-segment-write-key"},
        "share": 0.20,
    },
]
# (code, message, hint, HTTP status or None) per vendor: a handful of distinct errors, the first the commonest.
ERRORS: dict[str, list[tuple[str, str, str, int | None]]] = {
    "webhook": [
        (
            "http_500",
            "The server answered 500 Internal Server Error.",
            "The receiving server failed: check its logs.",
            500,
        ),
        ("timeout", "No answer within 10 s.", "The receiver is slow or down: check it, or raise the timeout.", None),
        (
            "http_422",
            "The server refused the event (422): field 'email' is required.",
            "Map an email for every event, or filter out events without one.",
            422,
        ),
    ],
    "sfmc_journey": [
        (
            "sfmc_10006",
            "Unable to queue Post: ContactKey is required.",
            "Map ContactKey to a field every event has, e.g. userId.",
            400,
        ),
        (
            "http_400",
            "Event definition key not found.",
            "The Event Definition Key is case-sensitive and must match Journey Builder exactly.",
            400,
        ),
    ],
    "marketo": [
        (
            "marketo_1003",
            "Lookup field 'email' is blank for this lead.",
            "Send an email in traits or context.traits, or change the lookup field.",
            200,
        ),
        (
            "marketo_1006",
            "Field 'planTier' not found.",
            "Create the field in Marketo, or remove it from the mapping.",
            200,
        ),
    ],
    "segment": [
        (
            "http_401",
            "Segment refused the write key (401 Unauthorized).",
            "Copy the source's write key from Segment into this destination's credentials.",
            401,
        ),
        (
            "http_400",
            "Segment refused the batch (400): message too large.",
            "Send smaller events: Segment takes 32 KB per event.",
            400,
        ),
    ],
}
VENDOR_URLS = {
    "webhook": "https://ingest.warehouse.example.com/events",
    "sfmc_journey": "https://mc-bench.rest.marketingcloudapis.com/interaction/v1/events",
    "marketo": "https://123-ABC-456.mktorest.com/rest/v1/leads.json",
    "segment": "https://api.segment.io/v1/batch",
}
# 20 track events, commonest first, each with its properties (3-10) and a value maker per property.
PRODUCTS = ["Trail Runner 2", "Rain Shell", "Wool Beanie", "City Backpack", "Merino Tee", "Hiking Socks"]
CAMPAIGNS = ["spring-sale", "newsletter-week-12", "retargeting", "brand", "black-friday"]


def _props(*names: str) -> tuple[str, ...]:
    return names


TRACK_EVENTS: list[tuple[str, float, tuple[str, ...]]] = [
    ("Product Viewed", 20, _props("product_id", "name", "price", "currency", "category", "position")),
    ("Page Scrolled", 12, _props("depth", "path", "session_id")),
    ("Product Added", 9, _props("product_id", "name", "price", "quantity", "currency", "cart_id")),
    ("Search Performed", 8, _props("query", "results", "session_id")),
    ("Cart Viewed", 6, _props("cart_id", "products", "value", "currency")),
    ("Checkout Started", 5, _props("order_id", "value", "revenue", "currency", "products", "coupon", "cart_id")),
    ("Link Clicked", 5, _props("url", "campaign", "email_id")),
    ("Email Opened", 5, _props("email_id", "campaign", "subject", "mailbox")),
    (
        "Order Completed",
        4,
        _props(
            "order_id",
            "total",
            "revenue",
            "shipping",
            "tax",
            "currency",
            "coupon",
            "products",
            "discount",
            "affiliation",
        ),
    ),
    ("Logged In", 4, _props("method", "remember_me", "session_id")),
    ("Video Played", 3, _props("video_id", "title", "position", "length", "autoplay")),
    ("Product Removed", 3, _props("product_id", "name", "price", "quantity")),
    ("Coupon Applied", 2.5, _props("order_id", "coupon", "discount", "cart_id")),
    ("Signed Up", 2, _props("method", "plan", "referrer", "newsletter")),
    ("Form Submitted", 2, _props("form_id", "form_name", "fields", "email")),
    ("Newsletter Subscribed", 1.5, _props("list", "source", "double_opt_in")),
    ("Payment Info Entered", 1.5, _props("order_id", "payment_method", "checkout_id")),
    ("Trial Started", 1, _props("plan", "trial_days", "seats")),
    ("Subscription Renewed", 0.8, _props("plan", "amount", "currency", "interval", "seats")),
    ("Order Refunded", 0.5, _props("order_id", "total", "currency", "reason")),
]
PAGE_NAMES = ["Home", "Pricing", "Product", "Cart", "Checkout", "Blog", "Help", "Account", "Sign up", "Search"]


def prop_value(rng: random.Random, name: str, event_id: int) -> Any:
    """A plausible value for a property; `total` is now and then sent as a string (a type change the Schema flags)."""
    r = rng.random()
    if name in ("order_id", "checkout_id", "cart_id"):
        return f"{name[:3]}_{event_id * 7919 % 10_000_000:07d}"
    if name in ("price", "value", "revenue", "total", "amount", "shipping", "tax", "discount"):
        value = round(rng.uniform(5, 400), 2)
        return str(value) if name == "total" and r < 0.01 else value
    if name in ("quantity", "position", "results", "depth", "length", "seats", "trial_days"):
        return rng.randint(1, 100)
    if name in ("remember_me", "autoplay", "newsletter", "double_opt_in"):
        return r < 0.5
    if name == "currency":
        return "USD" if r < 0.7 else "EUR"
    if name == "name":
        return PRODUCTS[int(r * len(PRODUCTS))]
    if name == "products":
        return [{"product_id": f"p{rng.randint(1, 500)}", "quantity": rng.randint(1, 3)} for _ in range(1 + int(r * 3))]
    if name == "campaign":
        return CAMPAIGNS[int(r * len(CAMPAIGNS))]
    if name == "coupon":
        return None if r < 0.6 else CAMPAIGNS[int(r * len(CAMPAIGNS))].upper()
    if name == "fields":
        return {"company": "Acme", "role": "marketing"}
    if name == "query":
        return rng.choice(["rain jacket", "socks", "backpack 30l", "gift card", "merino"])
    return f"{name}-{rng.randint(1, 5000)}"


# ---------------------------------------------------------------------------------------------- the generator


_DAYS: dict[int, str] = {}


def _day(days: int) -> str:
    text = _DAYS.get(days)
    if text is None:
        text = _DAYS[days] = (EPOCH + timedelta(days=days)).strftime("%Y-%m-%d")
    return text


def db_time(ts: float) -> str:
    """A UTC instant as Django stores a DateTimeField in SQLite ('YYYY-MM-DD HH:MM:SS.ffffff', naive UTC).

    By arithmetic on the day's cached date: millions of datetime objects would be most of the seed's time."""
    micros = int(ts * 1_000_000)
    days, rest = divmod(micros, 86_400_000_000)
    seconds, micro = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day(days)} {hours:02d}:{minutes:02d}:{seconds:02d}.{micro:06d}"


def iso(ts: float) -> str:
    """ISO 8601 in UTC with milliseconds, as the hub writes receivedAt."""
    text = db_time(ts)
    return f"{text[:10]}T{text[11:23]}Z"


def uuid_text(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


@dataclass
class Ids:
    """The next primary keys of the three tables the generator writes."""

    event: int = 1
    delivery: int = 1
    attempt: int = 1


@dataclass
class Rows:
    events: list[dict[str, Any]] = field(default_factory=list)  # column -> value (the rest: Table's defaults)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[tuple[int, datetime, str, int | None]] = field(default_factory=list)  # for rollups.add


@dataclass(frozen=True)
class Table:
    """How the seed writes one model's rows: the generator gives a row's values by column, and every column it
    leaves out gets the model's default, as ingest's INSERTs do (a field added with a default needs no change
    here). The columns come from the model."""

    sql: str
    columns: tuple[str, ...]
    defaults: dict[str, Any]

    @staticmethod
    @lru_cache
    def of(model: Any) -> Table:
        from django.db import connection

        fields = model._meta.concrete_fields
        columns = tuple(f.column for f in fields)
        defaults = {f.column: f.get_db_prep_save(f.get_default(), connection) for f in fields}
        marks = ", ".join("?" * len(columns))
        return Table(f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) VALUES ({marks})", columns, defaults)

    def values(self, row: dict[str, Any]) -> tuple:
        return tuple(row[c] if c in row else self.defaults[c] for c in self.columns)


class Generator:
    """Events with a realistic mix and their deliveries, as rows for executemany; deterministic per seed."""

    def __init__(self, sources: list[tuple[int, str]], destinations: list[dict[str, Any]], seed: int) -> None:
        self.rng = random.Random(seed)
        self.sources = sources  # (id, library name)
        self.source_weights = [s[3] for s in SOURCES]
        self.destinations = destinations  # DESTINATIONS entries with "id"
        self.users = 120_000
        names, weights, props = zip(*TRACK_EVENTS, strict=True)
        self.track_names, self.track_props = names, dict(zip(names, props, strict=True))
        self.track_cum = list(_cumulative(weights))
        self.keep_outcomes = True

    def user(self) -> tuple[str, str, str]:
        n = int(self.rng.paretovariate(1.2) * 1000) % self.users  # some users are far busier than others
        return f"user-{n:06d}", f"anon-{n * 2654435761 % 4294967296:08x}", f"person{n}@example.com"

    def event(self, event_id: int, ts: float, status: str = "accepted") -> tuple[dict[str, Any], str, int]:
        """One Event row; returns (row, type, source index)."""
        rng = self.rng
        s = rng.choices(range(len(self.sources)), self.source_weights)[0]
        source_id, library = self.sources[s]
        user_id, anonymous_id, email = self.user()
        known = rng.random() < 0.7
        r = rng.random()
        kind = "track" if r < 0.70 else "identify" if r < 0.85 else "page"
        sent = ts - rng.uniform(0.05, 2.0)
        payload: dict[str, Any] = {"type": kind, "messageId": uuid_text(rng), "anonymousId": anonymous_id}
        if known or kind == "identify":
            payload["userId"] = user_id
        name, event_email = "", ""
        context: dict[str, Any] = {
            "library": {"name": library[0], "version": library[1]},
            "ip": f"203.0.113.{event_id % 250 + 1}",
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15",
            "locale": "en-US" if rng.random() < 0.7 else "de-DE",
        }
        if kind == "track":
            i = _pick(self.track_cum, rng.random())
            name = self.track_names[i]
            props = self.track_props[name]
            payload["event"] = name
            payload["properties"] = {p: prop_value(rng, p, event_id) for p in props}
            if known and rng.random() < 0.4:
                context["traits"] = {"email": email}
                event_email = email
        elif kind == "identify":
            payload["traits"] = {
                "email": email.upper() if rng.random() < 0.05 else email,
                "firstName": rng.choice(["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken"]),
                "lastName": rng.choice(["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson"]),
                "plan": rng.choice(["free", "pro", "team"]),
                "createdAt": iso(ts - rng.uniform(0, 400 * 86400)),
            }
            event_email = email
        else:
            page = PAGE_NAMES[int(rng.random() * len(PAGE_NAMES))]
            name = page
            payload["name"] = page
            path = "/" + page.lower().replace(" ", "-")
            payload["properties"] = {"path": path, "url": "https://shop.example.com" + path, "title": page}
            context["page"] = {"path": path, "referrer": "https://www.google.com/"}
        payload["context"] = context
        payload |= {"originalTimestamp": iso(sent), "sentAt": iso(sent), "timestamp": iso(ts), "receivedAt": iso(ts)}
        reject_reason = ""
        if status == "rejected":
            reject_reason = rng.choice(
                [
                    "invalid_timestamp: timestamp, sentAt and originalTimestamp are too far apart.",
                    "missing_id: userId or anonymousId is required.",
                    "invalid_event: event must be a non-empty string for a track call.",
                ]
            )
        row = {
            "id": event_id,
            "source_id": source_id,
            "message_id": payload["messageId"],
            "type": kind,
            "event": name if kind == "track" else "",
            "user_id": payload.get("userId", ""),
            "anonymous_id": anonymous_id,
            "email": event_email,
            "payload": orjson.dumps(payload).decode(),
            "received_at": db_time(ts),
            "timestamp": db_time(ts),
            "status": status,
            "reject_reason": reject_reason,
        }
        return row, kind, s

    def deliveries(
        self, ids: Ids, event_id: int, ts: float, kind: str, name: str, now: float, per_event: float, rows: Rows
    ) -> None:
        """The event's deliveries (about `per_event`), their outcomes and an Attempt per failed or retrying one."""
        rng = self.rng
        count = int(per_event) + (rng.random() < per_event - int(per_event))
        chosen: list[dict[str, Any]] = []
        for d in self.destinations:
            if rng.random() < d["share"]:
                chosen.append(d)
        while len(chosen) > count:
            chosen.pop(rng.randrange(len(chosen)))
        while len(chosen) < min(count, len(self.destinations)):
            d = rng.choice(self.destinations)
            if d not in chosen:
                chosen.append(d)
        age = now - ts
        for d in chosen:
            did = ids.delivery
            ids.delivery += 1
            created = ts + rng.uniform(0.002, 0.02)
            r = rng.random()
            vendor = d["vendor"]
            # The last hours: the CRM receiver struggles (a backlog retrying) and Segment's write key was revoked.
            if d["slug"] == "crm" and age < 2 * 3600 and r < 0.4:
                status = "retrying"
            elif d["slug"] == "segment" and age < 3 * 3600:
                status = "failed"
            elif r < 0.10:
                status = "filtered"
            elif r < 0.13:
                status = "failed"
            elif r < 0.136:
                status = "retrying" if age < 4 * 3600 else "delivered"
            elif r < 0.14:
                status = "pending" if age < 600 else "delivered"
            else:
                status = "delivered"
            attempts, next_at, code, message, hint = 0, None, "", "", ""
            delivered_at = latency = None
            updated = created
            if status == "delivered":
                latency = int(rng.lognormvariate(math.log(180), 0.8))
                if rng.random() < 0.02:  # went through after a retry or two
                    latency += int(rng.uniform(10_000, 600_000))
                    attempts = 2
                else:
                    attempts = 1
                delivered_at = max(ts + 0.001, min(ts + latency / 1000, now - 1))
                latency = int((delivered_at - ts) * 1000)
                updated = delivered_at
            elif status == "filtered":
                message = self.filter_reason(d, kind, name)
                code = "filtered"
            elif status in ("failed", "retrying"):
                errors = ERRORS[vendor]
                code, message, hint, http = errors[0] if rng.random() < 0.6 else rng.choice(errors)
                if d["slug"] == "segment" and age < 3 * 3600:
                    code, message, hint, http = ERRORS["segment"][0]
                permanent = (http is not None and 400 <= http < 500) or vendor == "marketo"
                attempts = 1 if permanent else rng.randint(3, 8)
                if status == "failed":
                    updated = max(ts + 0.3, min(ts + (0.3 if permanent else 4 * 3600), now - 1))
                    if not permanent:
                        message += f" (gave up after {attempts} attempts: the retry deadline has passed)"
                else:
                    updated = max(ts + 0.3, min(ts + rng.uniform(10, 600), now - 1))
                    next_at = now + rng.uniform(5, 900)
                started = updated - 0.2
                duration = rng.randint(80, 10_000 if code == "timeout" else 900)
                rows.attempts.append(
                    {
                        "id": ids.attempt,
                        "delivery_id": did,
                        "number": attempts,
                        "started_at": db_time(started),
                        "duration_ms": duration,
                        "outcome": "failed" if status == "failed" else "retry",
                        "status_code": http,
                        "error_code": code,
                        "error_message": message,
                        "hint": hint,
                        "exchanges": self.exchanges(d, http, code, message, duration, event_id),
                    }
                )
                ids.attempt += 1
            elif status == "pending":
                next_at = created
            rows.deliveries.append(
                {
                    "id": did,
                    "event_id": event_id,
                    "destination_id": d["id"],
                    "status": status,
                    "attempts": attempts,
                    "next_attempt_at": db_time(next_at) if next_at else None,
                    "error_code": code,
                    "error_message": message,
                    "hint": hint,
                    "delivered_at": db_time(delivered_at) if delivered_at else None,
                    "latency_ms": latency,
                    "created_at": db_time(created),
                    "updated_at": db_time(updated),
                }
            )
            if not self.keep_outcomes:
                continue
            if status == "delivered":
                rows.outcomes.append((d["id"], EPOCH + timedelta(seconds=delivered_at), status, latency))
            elif status == "failed":
                rows.outcomes.append((d["id"], EPOCH + timedelta(seconds=updated), status, None))

    @staticmethod
    def filter_reason(d: dict[str, Any], kind: str, name: str) -> str:
        spec = d.get("filter") or {}
        if spec.get("types") and kind not in spec["types"]:
            return f"The filter lets through {', '.join(spec['types'])} only, not {kind}."
        if spec.get("events") and kind == "track" and name not in spec["events"]:
            return f"The filter does not list the event {name!r}."
        if d["vendor"] == "marketo" and kind == "page":
            return "Marketo takes identify and mapped track events only."
        return f'The event\'s integrations object sets "{d["name"]}": false.'

    def exchanges(self, d: dict[str, Any], http: int | None, code: str, message: str, ms: int, event_id: int) -> str:
        request = {
            "method": "POST",
            "url": VENDOR_URLS[d["vendor"]],
            "headers": {"Content-Type": "application/json", "Authorization": "[redacted]", "User-Agent": "cdphub/1.0"},
            "body": orjson.dumps({"events": [{"messageId": f"m-{event_id}", "type": "track"}]}).decode(),
        }
        response = None
        if http is not None:
            body = {"error": {"code": code, "message": message}, "requestId": f"req-{event_id:09d}"}
            response = {
                "status": http,
                "headers": {"Content-Type": "application/json"},
                "body": orjson.dumps(body).decode(),
            }
        exchange = {"request": request, "response": response, "error": "" if http else message, "duration_ms": ms}
        return orjson.dumps([exchange]).decode()


def _cumulative(weights: Any) -> Iterator[float]:
    total = sum(weights)
    running = 0.0
    for w in weights:
        running += w / total
        yield running


def _pick(cumulative: list[float], r: float) -> int:
    for i, c in enumerate(cumulative):
        if r < c:
            return i
    return len(cumulative) - 1


CHUNK = 10_000  # events per task of the generating processes


def generate_chunk(
    gen: Generator, ids: Ids, start: float, end: float, count: int, per_event: float, now: float, outcomes: bool = True
) -> Rows:
    """`count` events received between start and end, with their deliveries (outcomes kept for rollups.add)."""
    rng = gen.rng
    gen.keep_outcomes = outcomes
    rows = Rows()
    for ts in sorted(rng.uniform(start, end) for _ in range(count)):
        event_id = ids.event
        ids.event += 1
        status = "rejected" if rng.random() < 0.01 else "accepted"
        row, kind, _ = gen.event(event_id, ts, status)
        rows.events.append(row)
        if status == "accepted":
            gen.deliveries(ids, event_id, ts, kind, row["event"], now, per_event, rows)
    return rows


@dataclass(frozen=True)
class Task:
    sources: list[tuple[int, tuple[str, str]]]
    destinations: list[dict[str, Any]]
    seed: int
    first_event: int
    start: float
    end: float
    count: int
    per_event: float
    now: float


def run_task(task: Task) -> Rows:
    """One chunk, in a generating process: delivery and attempt ids from 0, offset by the writer."""
    gen = Generator(task.sources, task.destinations, seed=task.seed)
    ids = Ids(event=task.first_event, delivery=0, attempt=0)
    return generate_chunk(gen, ids, task.start, task.end, task.count, task.per_event, task.now, outcomes=False)


def generate_parallel(
    conn: sqlite3.Connection,
    sources: list[tuple[int, tuple[str, str]]],
    destinations: list[dict[str, Any]],
    start: float,
    end: float,
    events: int,
    per_event: float,
    now: float,
) -> Ids:
    """Generate in one process per core while this one writes (sqlite3 releases the GIL while it works)."""
    span = (end - start) / max(events, 1)
    tasks = []
    for first in range(0, events, CHUNK):
        count = min(CHUNK, events - first)
        tasks.append(
            Task(
                sources,
                destinations,
                20240601 + first,
                first + 1,
                start + first * span,
                start + (first + count) * span,
                count,
                per_event,
                now,
            )
        )
    ids = Ids()
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 2) as pool:
        for rows in pool.imap(run_task, tasks):
            d0, a0 = ids.delivery, ids.attempt
            for delivery in rows.deliveries:
                delivery["id"] += d0
            for attempt in rows.attempts:
                attempt["id"] += a0
                attempt["delivery_id"] += d0
            flush(conn, rows)
            ids.event += len(rows.events)
            ids.delivery += len(rows.deliveries)
            ids.attempt += len(rows.attempts)
    return ids


def flush(conn: sqlite3.Connection, rows: Rows) -> None:
    from deliveries.models import Attempt, Delivery, Event

    for model, values in ((Event, rows.events), (Delivery, rows.deliveries), (Attempt, rows.attempts)):
        if values:
            table = Table.of(model)
            conn.executemany(table.sql, [table.values(row) for row in values])


# ---------------------------------------------------------------------------------------------- the seed


@dataclass
class Seed:
    events: int
    deliveries: int
    seeded_at: float
    seconds: dict[str, float]
    fold_events: int = 0
    reused: bool = False
    topped_up: int = 0


MARKER = "bench_admin_seed"


def read_marker(db: Path, table: str = MARKER) -> dict[str, Any] | None:
    """What the seed of a reused data dir was made with (a one-row table in it), or None."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute(f"SELECT value FROM {table}").fetchone()
    except sqlite3.Error:
        return None
    return json.loads(row[0]) if row else None


def write_marker(db: Path, info: dict[str, Any], table: str = MARKER) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (value TEXT NOT NULL)")
        conn.execute(f"DELETE FROM {table}")
        conn.execute(f"INSERT INTO {table} (value) VALUES (?)", (json.dumps(info),))


def raw_connection(db: Path) -> sqlite3.Connection:
    """A connection of the seed's own (not Django's): no journal while loading, one big transaction."""
    from django.db import connection

    connection.close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def close_raw(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")  # as the hub runs it (its connections set WAL again anyway)
    conn.close()


def create_workspace() -> tuple[list[tuple[int, tuple[str, str]]], list[dict[str, Any]]]:
    """Sources, destinations (credentials through the model: encrypted), users and a few replays, by the ORM."""
    from django.contrib.auth.models import Group, User

    from deliveries.models import Replay
    from integrations.models import Destination, Source

    sources = []
    for slug, name, kind, _, library in SOURCES:
        settings = {"signing_secret": f"bench-{slug}-signing-secret"} if kind == "customerio" else {}
        config = {"mapping": {"type": "'track'", "event": "'Form Submitted'", "userId": "user_id"}}
        source = Source.objects.create(
            slug=slug, name=name, kind=kind, settings=settings, config=config if kind == "generic" else {}
        )
        sources.append((source.pk, library))
    destinations = []
    all_sources = [pk for pk, _ in sources]
    for spec in DESTINATIONS:
        destination = Destination(
            slug=spec["slug"],
            name=spec["name"],
            vendor=spec["vendor"],
            config=spec["config"],
            credentials=spec["credentials"],
            filter=spec.get("filter", {}),
            mapping=spec.get("mapping", {}),
        )
        destination.full_clean()
        destination.save()
        destination.sources.set(all_sources)
        destinations.append({**spec, "id": destination.pk})
    User.objects.create_superuser("bench-admin", "admin@example.com", None)
    marketer = User.objects.create_user("bench-marketer", "marketer@example.com", None, is_staff=True)
    marketer.groups.add(Group.objects.get(name="Marketer"))
    by_slug = {d["slug"]: d["id"] for d in destinations}
    for i, (slug, status) in enumerate((("crm", "done"), ("order-journey", "done"), ("warehouse", "done"))):
        replay = Replay.objects.create(
            created_by=marketer,
            criteria={"source": all_sources[0], "delivery_status": "failed", "since": "", "until": ""},
            description=f"Failed events of the website, replay {i + 1}",
            status=status,
            total=1200 * (i + 1),
            processed=1200 * (i + 1),
            queued=1100 * (i + 1),
            delivered=1080 * (i + 1),
            failed=20 * (i + 1),
        )
        replay.destinations.set([by_slug[slug]])
    return sources, destinations


def indexes_of(conn: sqlite3.Connection, tables: tuple[str, ...]) -> list[tuple[str, str]]:
    marks = ", ".join("?" * len(tables))
    query = f"SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL AND tbl_name IN ({marks})"
    return conn.execute(query, tables).fetchall()


def seed(db: Path, events: int, deliveries: int, now: float) -> Seed:
    """A fresh database with `events` events over the last 30 days and about `deliveries` deliveries."""
    from django.core.management import call_command

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    seconds: dict[str, float] = {}
    t = time.monotonic()
    from django.db import connection

    connection.close()
    call_command("migrate", verbosity=0, interactive=False)
    sources, destinations = create_workspace()
    seconds["migrate + workspace"] = time.monotonic() - t

    t = time.monotonic()
    conn = raw_connection(db)
    tables = ("deliveries_event", "deliveries_delivery", "deliveries_attempt")
    indexes = indexes_of(conn, tables)
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    conn.execute("BEGIN")
    accepted = events * 0.99
    per_event = deliveries / accepted if accepted else 0
    ids = generate_parallel(conn, sources, destinations, now - DAYS * 86400, now - 30, events, per_event, now)
    gen = Generator(sources, destinations, seed=1)
    # A few Event Tester sends (status "test"), so the Debugger's test filter has something to show.
    rows = Rows()
    for i in range(20):
        ts = now - 3600 * (i + 1)
        row, _, _ = gen.event(ids.event, ts, "test")
        rows.events.append(row)
        created = db_time(ts + 0.01)
        rows.deliveries.append(
            {
                "id": ids.delivery,
                "event_id": ids.event,
                "destination_id": destinations[i % len(destinations)]["id"],
                "status": "delivered",
                "attempts": 1,
                "delivered_at": db_time(ts + 0.3),
                "latency_ms": 300,
                "is_test": True,
                "created_at": created,
                "updated_at": created,
            }
        )
        ids.event += 1
        ids.delivery += 1
    flush(conn, rows)
    conn.execute("COMMIT")
    seconds["insert rows"] = time.monotonic() - t
    t = time.monotonic()
    for _, sql in indexes:
        conn.execute(sql)
    seconds["build indexes"] = time.monotonic() - t
    update_destinations(conn, now)
    close_raw(conn)
    return Seed(events=ids.event - 1, deliveries=ids.delivery - 1, seeded_at=now, seconds=seconds)


def update_destinations(conn: sqlite3.Connection, now: float) -> None:
    """Each destination's last delivery and last error, as the engine keeps them."""
    for (destination_id,) in conn.execute("SELECT id FROM integrations_destination").fetchall():
        delivered = conn.execute(
            "SELECT MAX(delivered_at) FROM deliveries_delivery WHERE destination_id = ? AND status = 'delivered' "
            "AND created_at >= ?",
            (destination_id, db_time(now - 86400)),
        ).fetchone()[0]
        failed = conn.execute(
            "SELECT error_code, error_message, hint, updated_at FROM deliveries_delivery "
            "WHERE destination_id = ? AND status = 'failed' AND created_at >= ? ORDER BY created_at DESC LIMIT 1",
            (destination_id, db_time(now - 86400)),
        ).fetchone()
        if failed:
            conn.execute(
                "UPDATE integrations_destination SET last_delivered_at = ?, last_error_code = ?, last_error = ?, "
                "last_error_hint = ?, last_error_at = ? WHERE id = ?",
                (delivered, *failed, destination_id),
            )


def top_up(db: Path, info: dict[str, Any], now: float) -> int:
    """Bring a reused database up to now: the events it would have received since, the same number of the
    oldest removed (their deliveries and attempts too); rollups added by the hub's own rollups.add."""
    from django.db import transaction

    from deliveries.engine import rollups
    from integrations.models import Destination, Source

    newest = info.get("newest", info["seeded_at"] - 30)
    rate = info["events"] / (DAYS * 86400)
    count = int((now - 30 - newest) * rate)
    if count <= 0:
        return 0
    sources = [(s.pk, lib) for s, (*_, lib) in zip(Source.objects.order_by("pk"), SOURCES, strict=False)]
    destinations = []
    slugs = {d.slug: d.pk for d in Destination.objects.only("id", "slug")}
    for spec in DESTINATIONS:
        destinations.append({**spec, "id": slugs[spec["slug"]]})
    conn = raw_connection(db)
    ids = Ids(
        event=conn.execute("SELECT MAX(id) FROM deliveries_event").fetchone()[0] + 1,
        delivery=conn.execute("SELECT MAX(id) FROM deliveries_delivery").fetchone()[0] + 1,
        attempt=(conn.execute("SELECT MAX(id) FROM deliveries_attempt").fetchone()[0] or 0) + 1,
    )
    gen = Generator(sources, destinations, seed=int(now))
    conn.execute("BEGIN")
    oldest = conn.execute("SELECT id FROM deliveries_event ORDER BY id LIMIT 1 OFFSET ?", (count,)).fetchone()[0]
    gone = "SELECT id FROM deliveries_delivery WHERE event_id < ?"
    conn.execute(f"DELETE FROM deliveries_attempt WHERE delivery_id IN ({gone})", (oldest,))
    conn.execute("DELETE FROM deliveries_delivery WHERE event_id < ?", (oldest,))
    conn.execute("DELETE FROM deliveries_event WHERE id < ?", (oldest,))
    per_event = info["deliveries"] / max(info["events"] * 0.99, 1)
    rows = generate_chunk(gen, ids, newest, now - 30, count, per_event, now)
    flush(conn, rows)
    conn.execute("COMMIT")
    update_destinations(conn, now)
    close_raw(conn)
    with transaction.atomic():
        rollups.add(rows.outcomes)
    return count


def prepare(args: argparse.Namespace, db: Path) -> Seed:
    from django.core.management import call_command

    now = time.time()
    info = read_marker(db)
    wanted = {"version": SEED_VERSION, "events": args.events, "deliveries": args.deliveries}
    reason = ""
    if args.reseed:
        reason = "--reseed"
    elif info is None:
        reason = "no seeded database yet"
    elif {k: info.get(k) for k in wanted} != wanted:
        stored = f"{info.get('events'):,} events / {info.get('deliveries'):,} deliveries (v{info.get('version')})"
        reason = f"the stored seed is {stored}"
    elif now - info["seeded_at"] > args.max_age * 3600:
        reason = f"the stored seed is {(now - info['seeded_at']) / 3600:.0f} h old (--max-age {args.max_age:g})"
    if not reason:
        print(f"reusing {db} (seeded {(now - info['seeded_at']) / 3600:.1f} h ago); migrate, top up ...", flush=True)
        call_command("migrate", verbosity=0, interactive=False)  # indexes added since the seed are built now
        t = time.monotonic()
        added = top_up(db, info, now)
        _, fold_s = fold_schema()
        info["newest"] = now - 30
        write_marker(db, info)
        result = Seed(info["events"], info["deliveries"], info["seeded_at"], dict(info["seconds"]), reused=True)
        result.seconds["top-up (reuse)"] = time.monotonic() - t
        result.topped_up, result.fold_events = added, info.get("fold", 0)  # the seed's fold: its rate is the number
        result.seconds["schema.fold() (top-up)"] = fold_s
        return result
    print(f"seeding {db}: {args.events:,} events, ~{args.deliveries:,} deliveries ({reason}) ...", flush=True)
    started = time.monotonic()
    result = seed(db, args.events, args.deliveries, now)
    print(f"  rows written in {time.monotonic() - started:.0f} s; rollups ...", flush=True)
    from deliveries.engine import rollups

    t = time.monotonic()
    written = rollups.rebuild()
    result.seconds["rollups.rebuild()"] = time.monotonic() - t
    print(f"  {written:,} delivery rollup rows in {result.seconds['rollups.rebuild()']:.1f} s; schema fold ...")
    result.fold_events, result.seconds["schema.fold()"] = fold_schema()
    result.seconds["total"] = time.monotonic() - started
    info = {**wanted, "seeded_at": now, "newest": now - 30, "seconds": result.seconds, "fold": result.fold_events}
    info["events"], info["deliveries"] = args.events, args.deliveries
    info["rows"] = {"events": result.events, "deliveries": result.deliveries}
    write_marker(db, info)
    return result


def statistics_for_planner(db: Path, analyze: bool) -> None:
    """No planner statistics, as the hub runs (it never ANALYZEs), or with --analyze those `PRAGMA optimize`
    would gather (analysis_limit=1000: milliseconds even at this size), to compare the plans."""
    with sqlite3.connect(db) as conn:
        if analyze:
            conn.execute("PRAGMA analysis_limit=1000")
            conn.execute("ANALYZE")
        elif conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
            conn.execute("DELETE FROM sqlite_stat1")
    from django.db import connection

    connection.close()  # a connection reads the statistics when it opens: the next one plans with these


def fold_schema() -> tuple[int, float]:
    """The engine's schema fold until it returns 0: (events folded, seconds)."""
    from deliveries.engine.schema_fold import fold

    t = time.monotonic()
    total = 0
    while n := fold():
        total += n
    return total, time.monotonic() - t


# ---------------------------------------------------------------------------------------------- the pages


@dataclass
class Page:
    label: str
    url: str  # "" when the page is not built yet
    method: str = "GET"
    data: dict[str, Any] | None = None
    note: str = ""


@dataclass
class Timing:
    page: Page
    role: str
    runs_ms: list[float] = field(default_factory=list)
    status: int | None = None
    error: str = ""
    queries: list[dict[str, str]] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs_ms) if self.runs_ms else float("nan")


def pages() -> list[Page]:
    """The pages to time, with ids picked from the seeded data (the busiest source and destination, ...)."""
    from django.db.models import Max
    from django.utils import timezone

    from deliveries.models import Delivery, Event
    from deliveries.pages.base import optional_url as url_of  # "" for a page not built yet
    from integrations.models import Destination, Source

    source = Source.objects.get(slug="website")  # the busiest by construction (55% of the events)
    busiest = Destination.objects.get(slug="warehouse")  # ~92% of the events go there
    newest = Event.objects.aggregate(m=Max("id"))["m"]
    failed = (
        Delivery.objects.filter(status=Delivery.Status.FAILED, destination=busiest)
        .order_by("-id")
        .values_list("id", "event_id")
        .first()
    )
    failed_delivery, failed_event = failed if failed else (None, None)
    recent = list(
        Event.objects.filter(id__gt=newest - 2000, status=Event.Status.ACCEPTED)
        .exclude(email="")
        .exclude(user_id="")
        .values_list("user_id", "email")[:1]
    )
    user_id, email = recent[0] if recent else ("user-000001", "person1@example.com")
    # Free text: an order id from an event a few hundred back (found within the bounded scan).
    order = (
        Event.objects.filter(id__lt=newest - 300, event="Order Completed")
        .order_by("-id")
        .values_list("payload", flat=True)
        .first()
    )
    term = (order or {}).get("properties", {}).get("order_id", "ord_0000001")
    now = timezone.localtime().replace(second=0, microsecond=0)
    dry = {
        "source": source.pk,
        "since": (now - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M"),
        "until": (now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"),
        "type": "",
        "event": "",
        "delivery_status": "failed",
        "destinations": [busiest.pk],
    }
    dry_week = {**dry, "since": (now - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"), "delivery_status": "any"}
    debugger = "admin:deliveries_event_debugger"
    out = [
        Page("admin index (dashboard)", url_of("admin:index")),
        Page("Event changelist", url_of("admin:deliveries_event_changelist")),
        Page("Delivery changelist", url_of("admin:deliveries_delivery_changelist")),
        Page(
            "Delivery changelist ?status=failed",
            url_of("admin:deliveries_delivery_changelist", query={"status__exact": "failed"}),
        ),
        Page(
            "Delivery changelist ?status=failed&destination=busiest",
            url_of(
                "admin:deliveries_delivery_changelist",
                query={"status__exact": "failed", "destination__id__exact": busiest.pk},
            ),
        ),
        Page("Delivery change (failed)", url_of("admin:deliveries_delivery_change", [failed_delivery])),
        Page("Destination changelist", url_of("admin:integrations_destination_changelist")),
        Page("Destination change (busiest)", url_of("admin:integrations_destination_change", [busiest.pk])),
        Page("Debugger", url_of(debugger)),
        Page("Debugger ?source=busiest", url_of(debugger, query={"source": source.pk})),
        Page("Debugger ?type=identify", url_of(debugger, query={"type": "identify"})),
        Page("Debugger ?event=Order Completed", url_of(debugger, query={"event": "Order Completed"})),
        Page("Debugger ?status=accepted", url_of(debugger, query={"status": "accepted"})),
        Page("Debugger ?status=rejected", url_of(debugger, query={"status": "rejected"})),
        Page("Debugger ?status=failed", url_of(debugger, query={"status": "failed"})),
        Page("Debugger ?status=test", url_of(debugger, query={"status": "test"})),
        Page("Debugger ?q=<user id>", url_of(debugger, query={"q": user_id})),
        Page("Debugger ?q=<email>", url_of(debugger, query={"q": email})),
        Page("Debugger ?q=<free text>", url_of(debugger, query={"q": term})),
        Page("Debugger feed ?after=newest", url_of("admin:deliveries_event_debugger_feed", query={"after": newest})),
        Page("Debugger detail (failed delivery)", url_of("admin:deliveries_event_debugger_detail", [failed_event])),
    ]
    for window in ("24h", "7d", "30d"):
        out.append(
            Page(
                f"Schema ?window={window}",
                url_of("admin:deliveries_event_schema", query={"source": source.pk, "window": window}),
            )
        )
    out.append(Page("Event Tester ?event=<id>", url_of("admin:deliveries_event_tester", query={"event": failed_event})))
    for window in ("10m", "1h", "24h", "7d", "14d"):
        out.append(
            Page(
                f"Event Delivery busiest ?window={window}",
                url_of("admin:deliveries_delivery_event_delivery", [busiest.pk], {"window": window}),
            )
        )
    out += [
        Page("Event Delivery index", url_of("admin:deliveries_delivery_event_delivery_index")),
        Page("Replay add", url_of("admin:deliveries_replay_add")),
        Page(
            "Replay add ?source&delivery_status=failed",
            url_of("admin:deliveries_replay_add", query={"source": source.pk, "delivery_status": "failed"}),
        ),
        Page("Replay dry run: 24 h, failed, busiest", url_of("admin:deliveries_replay_add"), "POST", dry),
        Page("Replay dry run: 7 d, any status, busiest", url_of("admin:deliveries_replay_add"), "POST", dry_week),
        Page("Replay changelist", url_of("admin:deliveries_replay_changelist")),
    ]
    return out


def time_page(client: Any, page: Page, role: str, runs: int) -> Timing:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    timing = Timing(page, role)

    def fetch() -> int:
        post = page.method == "POST"
        response = client.post(page.url, page.data or {}) if post else client.get(page.url)
        body = response.content  # rendered: a TemplateResponse renders inside the handler
        if response.status_code != 200:
            timing.error = f"HTTP {response.status_code}: {body[:200]!r}"
        return response.status_code

    try:
        timing.status = fetch()  # the warm-up
        for _ in range(runs):
            t = time.perf_counter()
            fetch()
            timing.runs_ms.append((time.perf_counter() - t) * 1000)
        with CaptureQueriesContext(connection) as captured:
            fetch()
        timing.queries = list(captured.captured_queries)
    except Exception:
        timing.error = traceback.format_exc(limit=6).strip().splitlines()[-1]
        timing.runs_ms = timing.runs_ms or []
    return timing


def explain(sql: str) -> list[str]:
    from django.db import connection

    if connection.vendor != "sqlite":
        return []
    with connection.cursor() as cursor:
        try:
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
        except Exception as exc:  # a statement that does not explain (e.g. SAVEPOINT)
            return [f"(cannot explain: {exc})"]
        return [row[-1] for row in cursor.fetchall()]


# ---------------------------------------------------------------------------------------------- report


def db_size(db: Path) -> int:
    return sum(Path(f"{db}{s}").stat().st_size for s in ("", "-wal", "-shm") if Path(f"{db}{s}").exists())


def print_slowest_queries(
    timings: list[Timing], budget: float, always: bool, top: int, label: Callable[[Timing], str]
) -> None:
    """For each page over budget (every page when `always`), slowest first: its slowest queries and their plans."""
    for t in sorted((t for t in timings if t.runs_ms), key=lambda t: -t.median):
        if t.median <= budget and not always:
            continue
        print()
        print(f"{label(t)} ({t.median:,.0f} ms, {len(t.queries)} queries): the slowest queries")
        for q in sorted(t.queries, key=lambda q: -float(q["time"]))[:top]:
            print(f"  {float(q['time']) * 1000:,.1f} ms  {q['sql'][:400]}")
            for step in explain(q["sql"]):
                print(f"      plan: {step}")


def report(args: argparse.Namespace, seed_info: Seed, timings: list[Timing], skipped: list[str], db: Path) -> list[str]:
    problems: list[str] = []
    header = ("page", "role", "median", "max", "queries", "slowest query", "verdict")
    rows = []
    for t in timings:
        slowest = max((float(q["time"]) for q in t.queries), default=0.0) * 1000
        if t.error:
            verdict = "ERROR"
            problems.append(f"{t.page.label} as {t.role}: {t.error}")
        elif t.median > args.budget:
            verdict = "SLOW"
            problems.append(f"{t.page.label} as {t.role}: median {t.median:,.0f} ms > {args.budget:.0f} ms")
        else:
            verdict = "ok"
        rows.append(
            (
                t.page.label,
                t.role,
                f"{t.median:,.0f} ms" if t.runs_ms else "-",
                f"{max(t.runs_ms):,.0f} ms" if t.runs_ms else "-",
                str(len(t.queries)),
                f"{slowest:,.0f} ms",
                verdict,
            )
        )
    title = (
        f"cdphub admin benchmark  ({seed_info.events:,} events, {seed_info.deliveries:,} deliveries, SQLite WAL, "
        f"django.test.Client in-process, {args.runs} runs after 1 warm-up, budget median < {args.budget:.0f} ms"
        f"{', with ANALYZE statistics' if args.analyze else ''})"
    )
    print_table(title, header, rows, right=range(2, 6))
    for label in skipped:
        print(f"{label}: not built yet (no such URL name)")
    seconds = "; ".join(f"{k} {v:.1f} s" for k, v in seed_info.seconds.items())
    print()
    state = "reused" if seed_info.reused else "seeded"
    print(f"database: {db} ({state}), {db_size(db) / 1e9:.2f} GB; {seconds}")
    if seed_info.reused:
        print(f"  topped up with {seed_info.topped_up:,} events received since the last run (as many oldest removed)")
    fold_s = seed_info.seconds.get("schema.fold()", 0.0)
    if seed_info.fold_events and fold_s:
        when = " (when seeded)" if seed_info.reused else ""
        rate = seed_info.fold_events / fold_s
        print(f"schema fold{when}: {seed_info.fold_events:,} events in {fold_s:.1f} s = {rate:,.0f} events/s")
    print_slowest_queries(timings, args.budget, args.explain, args.explain_top, lambda t: f"{t.page.label} as {t.role}")
    print()
    fine = f"Every page answered 200 with a median under {args.budget:.0f} ms, as a superuser and as a Marketer."
    print_problems("OVER BUDGET OR BROKEN", problems, fine)
    return problems


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events to seed (1,000,000)")
    p.add_argument("--deliveries", type=int, help="deliveries to seed (default: 2 per event)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=f"(default {DEFAULT_DATA_DIR})")
    p.add_argument("--reseed", action="store_true", help="seed again even when the stored seed matches")
    p.add_argument("--max-age", type=float, default=72, help="hours a seed is reused, topped up (72)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per page after one warm-up (5)")
    p.add_argument("--budget", type=float, default=BUDGET_MS, help="median budget per page in ms (500)")
    p.add_argument("--role", choices=("superuser", "marketer"), action="append", help="only this role (repeatable)")
    p.add_argument("--only", action="append", default=[], help="only pages whose label contains this (repeatable)")
    p.add_argument("--analyze", action="store_true", help="time with planner statistics (ANALYZE), which the hub lacks")
    p.add_argument("--explain", action="store_true", help="query plans of every page, not only of slow ones")
    p.add_argument("--explain-top", type=int, default=3, help="slowest queries explained per page (3)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = p.parse_args(argv)
    if args.deliveries is None:
        args.deliveries = args.events * 2
    return args


def setup_django(data_dir: Path) -> None:
    note_scrubbed(remove=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["CDPHUB_DATA_DIR"] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "cdphub.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    data_dir = args.data_dir.resolve()
    try:
        setup_django(data_dir)
        from django.conf import settings

        db = Path(settings.DATABASES["default"]["NAME"])
        seed_info = prepare(args, db)
        statistics_for_planner(db, args.analyze)
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        print("ERROR: the seed failed", file=sys.stderr)
        return 2

    from django.contrib.auth.models import User
    from django.test import Client

    all_pages = pages()
    skipped = [p.label for p in all_pages if not p.url]
    chosen = [p for p in all_pages if p.url and (not args.only or any(o in p.label for o in args.only))]
    load = machine_busy()
    print(f"machine load before timing: {load:.2f} of {os.cpu_count()} cores busy", flush=True)
    if load > 0.3:
        print("!! other processes are using the CPU: the timings are high; rerun on a quiet machine")
    timings: list[Timing] = []
    for role, username in (("superuser", "bench-admin"), ("marketer", "bench-marketer")):
        if args.role and role not in args.role:
            continue
        client = Client(SERVER_NAME="localhost")  # an allowed host without setup_test_environment's instrumentation
        client.force_login(User.objects.get(username=username))
        print(f"timing {len(chosen)} pages as {role} ...", flush=True)
        for page in chosen:
            timing = time_page(client, page, role, args.runs)
            timings.append(timing)
            mark = f"{timing.median:,.0f} ms" if timing.runs_ms else timing.error
            print(f"  {page.label:<48} {mark}", flush=True)
    problems = report(args, seed_info, timings, skipped, db)
    print(f"total time {time.monotonic() - started:.0f} s")
    if args.json:
        results = {
            "events": seed_info.events,
            "deliveries": seed_info.deliveries,
            "database_bytes": db_size(db),
            "seed_seconds": seed_info.seconds,
            "reused": seed_info.reused,
            "schema_fold_events": seed_info.fold_events,
            "pages": [
                {
                    "page": t.page.label,
                    "url": t.page.url,
                    "role": t.role,
                    "median_ms": t.median if t.runs_ms else None,
                    "max_ms": max(t.runs_ms) if t.runs_ms else None,
                    "runs_ms": t.runs_ms,
                    "queries": len(t.queries),
                    "error": t.error,
                }
                for t in timings
            ],
            "skipped": skipped,
            "problems": problems,
        }
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
