"""Functions benchmark: destination functions in V8 beside the built-in SFMC vendor, on one hub, in one run.

    make bench                                   # runs this after the other benchmarks
    .venv/bin/python bench/functions.py --events 3000 --json /tmp/functions.json

Steps: a fresh temporary data dir (SQLite in WAL mode, the database broker; var/ is never touched) -> migrate ->
`manage.py sandbox` on a free loopback port -> three sources, each feeding one destination:
  - `bench-builtin`: the built-in `sfmc_journey` vendor (APIEvent-welcome);
  - `bench-seed`: the seed article's SFMC destination function, verbatim (integrations/functions/examples/), to the
    same sandbox Marketing Cloud (APIEvent-welcome-function), its own module-level token cache;
  - `bench-trivial`: a destination function that returns at once (no fetch): the runtime's own cost;
-> gunicorn and `manage.py worker` as `make run` starts them -> for each destination in turn, the same backlog:
POST /v1/batch (100 identify events each) of --events events, then wait until every delivery is delivered
-> deliveries/s from the first POST to the last delivery.

Then, in this process: the per-invocation cost in µs of a warm context (the trivial function; the seed function
with fetch recorded, not sent), and the memory of a worker process before and after 20 functions are loaded
(each its own V8 context, as 20 function destinations in one worker would be).

Goal (issue 13): the seed function delivers at >= 50% of the built-in vendor's rate.
Exit status: 0 = measured; 1 = the hub misbehaved or the goal is missed; 2 = the benchmark could not run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests
from harness import ROOT, BenchError, SandboxRun, manage, print_table, start_web, start_worker, venv_bin

BATCH = 100
GOAL = 0.5
SEED = ROOT / "integrations" / "functions" / "examples" / "sfmc_journey.js"
TRIVIAL = "async function onIdentify(event, settings) {\n  return;\n}\n"
SFMC_CLIENT = {"client_id": "sandbox-sfmc-client", "client_secret": "sandbox-sfmc-secret"}
SEED_SETTINGS = [
    {"name": "sfmcAuthenticationEndpoint", "type": "string", "required": True},
    {"name": "sfmcPostJourneyEndpoint", "type": "string", "required": True},
    {"name": "sfmcJourneyKey", "type": "string", "required": True},
    {"name": "sfmcmid", "type": "string"},
    {"name": "clientid", "type": "string", "required": True, "sensitive": True},
    {"name": "clientsecret", "type": "string", "required": True, "sensitive": True},
]
DESTINATIONS = {"builtin": "bench-builtin", "seed": "bench-seed", "trivial": "bench-trivial"}


def auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def identify(n: int, run: str, kind: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": f"user-{run}-{kind}-{n}",
        "messageId": f"fn-{run}-{kind}-{n}",
        "traits": {"email": f"person{n}@example.com", "name": f"Person {n}", "company": {"industry": "Retail"}},
    }


@dataclass
class Bench(SandboxRun):
    def start(self) -> None:
        manage(self.env, "migrate", "--noinput", "-v0")
        self.start_sandbox()
        base = self.sandbox_url
        workspace = {
            "functions": [
                {
                    "slug": "sfmc-seed",
                    "name": "SFMC journey (seed)",
                    "kind": "destination",
                    "code": SEED.read_text(),
                    "settings": SEED_SETTINGS,
                },
                {"slug": "trivial", "name": "Trivial", "kind": "destination", "code": TRIVIAL, "settings": []},
            ],
            "sources": [{"slug": k, "name": k, "kind": "http", "write_key": f"wk_bench_fn_{k}"} for k in DESTINATIONS],
            "destinations": [
                {
                    "slug": "bench-builtin",
                    "name": "Built-in SFMC journey",
                    "vendor": "sfmc_journey",
                    "sources": ["builtin"],
                    "config": {
                        "auth_base_url": base + "/sfmc/auth",
                        "rest_base_url": base + "/sfmc/rest",
                        "event_definition_key": "APIEvent-welcome",
                    },
                    "credentials": SFMC_CLIENT,
                },
                {
                    "slug": "bench-seed",
                    "name": "Seed SFMC function",
                    "vendor": "function",
                    "sources": ["seed"],
                    "config": {
                        "function": "sfmc-seed",
                        "settings": {
                            "sfmcAuthenticationEndpoint": base + "/sfmc/auth/v2/token",
                            "sfmcPostJourneyEndpoint": base + "/sfmc/rest/interaction/v1/events",
                            "sfmcJourneyKey": "APIEvent-welcome-function",
                        },
                    },
                    "credentials": {"clientid": SFMC_CLIENT["client_id"], "clientsecret": SFMC_CLIENT["client_secret"]},
                },
                {
                    "slug": "bench-trivial",
                    "name": "Trivial function",
                    "vendor": "function",
                    "sources": ["trivial"],
                    "config": {"function": "trivial", "settings": {}},
                    "credentials": {},
                },
            ],
        }
        path = self.data_dir / "workspace.json"
        path.write_text(json.dumps(workspace))
        manage(self.env, "import_workspace", str(path))
        self.children.append(start_web(self.data_dir, self.env, self.web_url))
        self.children.append(start_worker(self.data_dir, self.env))

    def backlog(self, kind: str) -> None:
        slug, count = DESTINATIONS[kind], self.args.events
        events = [identify(n, self.run, kind) for n in range(count)]
        session = requests.Session()
        headers = {"Content-Type": "application/json", "Authorization": auth(f"wk_bench_fn_{kind}")}
        started = time.monotonic()
        for first in range(0, count, BATCH):
            body = orjson.dumps({"batch": events[first : first + BATCH]})
            response = session.post(self.web_url + "/v1/batch", data=body, headers=headers, timeout=30)
            if response.status_code != 200:
                raise BenchError(f"/v1/batch answered {response.status_code}: {response.text[:300]}")
        self.wait_delivered(slug, count)
        took = time.monotonic() - started
        self.results[kind] = {
            "events": count,
            "seconds": round(took, 2),
            "deliveries_per_second": round(count / took, 1),
        }
        print(f"{kind}: {count:,} delivered in {took:.1f} s = {count / took:,.0f}/s", flush=True)

    def wait_delivered(self, slug: str, count: int) -> None:
        last, last_change = -1, time.monotonic()
        while True:
            statuses = self.statuses(slug)
            done = statuses.get("delivered", 0)
            if statuses.get("failed") or statuses.get("filtered"):
                rows = self.query(
                    "SELECT d.status, d.error_code, d.error_message FROM deliveries_delivery d JOIN "
                    "integrations_destination t ON t.id = d.destination_id WHERE t.slug = ? AND d.status IN "
                    "('failed', 'filtered') LIMIT 3",
                    slug,
                )
                self.problems.append(f"{slug}: deliveries did not deliver: {rows}")
                raise BenchError(f"{slug} failed deliveries")
            if done >= count:
                return
            if done != last:
                last, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > self.args.stall:
                raise BenchError(f"{slug}: nothing delivered for {self.args.stall:g} s ({statuses})")
            time.sleep(0.05)

    def tokens(self) -> None:
        counters = requests.get(self.sandbox_url + "/_sandbox", timeout=10).json().get("counters", {})
        self.results["sfmc_tokens_issued"] = counters.get("sfmc_tokens_issued")


IN_PROCESS = r"""
import json, os, resource, sys, time
import django
django.setup()
from integrations.functions.fetch import Fetcher
from integrations.functions.runtime import Sandbox

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

n = int(sys.argv[1])
seed = open(sys.argv[2]).read()
event = {"type": "identify", "userId": "u1", "traits": {"email": "a@b.c", "name": "A", "company": {"industry": "x"}}}
settings = {"sfmcAuthenticationEndpoint": "https://mc-x.auth.marketingcloudapis.com/v2/token",
            "sfmcPostJourneyEndpoint": "https://mc-x.rest.marketingcloudapis.com/interaction/v1/events",
            "sfmcJourneyKey": "k", "clientid": "cid-1234", "clientsecret": "secret-1234"}
out = {"rss_mb_django": round(rss_mb(), 1)}
fetcher = Fetcher([], send=False)
trivial = Sandbox("async function onIdentify(event, settings) { return; }")
for _ in range(200):
    trivial.invoke("onIdentify", [event, settings], fetcher)
started = time.perf_counter()
for _ in range(n):
    trivial.invoke("onIdentify", [event, settings], fetcher)
out["trivial_us"] = round((time.perf_counter() - started) / n * 1e6, 1)
warm = Sandbox(seed)
for _ in range(200):
    warm.invoke("onIdentify", [event, settings], fetcher)
started = time.perf_counter()
for _ in range(n):
    warm.invoke("onIdentify", [event, settings], fetcher)
out["seed_recorded_us"] = round((time.perf_counter() - started) / n * 1e6, 1)
trivial.close(); warm.close()
before = rss_mb()
started = time.perf_counter()
loaded = [Sandbox(seed + f"\n// function {i}\n") for i in range(20)]
for sandbox in loaded:
    sandbox.invoke("onIdentify", [event, settings], fetcher)
out["load_ms_each"] = round((time.perf_counter() - started) / 20 * 1000, 1)
out["rss_mb_before_20"] = round(before, 1)
out["rss_mb_with_20"] = round(rss_mb(), 1)
out["mb_per_function"] = round((out["rss_mb_with_20"] - before) / 20, 2)
print(json.dumps(out))
for sandbox in loaded:
    sandbox.close()
"""


def in_process(invocations: int) -> dict[str, Any]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cdphub.settings", "PYTHONPATH": str(ROOT)}
    env.pop("CDPHUB_DATABASE_URL", None)
    result = subprocess.run(
        [venv_bin("python"), "-c", IN_PROCESS, str(invocations), str(SEED)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"the in-process measurement failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=3000, help="backlog size per destination (3,000)")
    p.add_argument("--invocations", type=int, default=2000, help="warm invocations timed in-process (2,000)")
    p.add_argument("--stall", type=float, default=60, help="give up when nothing is delivered for this long (60 s)")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir (logs included)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args, Path(tempfile.mkdtemp(prefix="cdphub-bench-functions-")))

    def phases() -> None:
        bench.start()
        for kind in ("builtin", "seed", "trivial"):
            bench.backlog(kind)
        bench.tokens()
        bench.check_logs()
        bench.results["in_process"] = in_process(args.invocations)

    return bench.execute(phases, judge=lambda: judge(bench))


def judge(bench: Bench) -> None:
    """The table, and the goal: the seed function at >= 50% of the built-in vendor's rate."""
    results = bench.results
    builtin = results["builtin"]["deliveries_per_second"]
    ratio = results["seed"]["deliveries_per_second"] / builtin
    results["seed_vs_builtin"] = round(ratio, 2)
    print_table(
        "Destination functions beside the built-in SFMC vendor (same hub, same backlog)",
        ["destination", "deliveries/s", "of built-in"],
        [
            [k, f"{results[k]['deliveries_per_second']:,.0f}", f"{results[k]['deliveries_per_second'] / builtin:.0%}"]
            for k in ("builtin", "seed", "trivial")
        ],
        right={1, 2},
    )
    if ratio < GOAL:
        bench.problems.append(f"the seed function delivered at {ratio:.0%} of the built-in rate (goal {GOAL:.0%})")
    if (results.get("sfmc_tokens_issued") or 0) > 2 + int(os.environ.get("CDPHUB_WORKERS", "4")):
        bench.problems.append(f"{results['sfmc_tokens_issued']} SFMC tokens: the token caches did not hold")


if __name__ == "__main__":
    sys.exit(main())
