"""README's management API walk-through, run as printed (the hub's address the only change) in bash against a live
hub with a real worker and the vendor sandbox standing in for Marketing Cloud, as under `make run`: the token
from `manage.py create_api_token`, the source, the journey, the identify, and the delivery read back as delivered.
Then README's copy of the seed's Signal call creates its journey."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from deliveries.models import Delivery
from integrations.models import ApiToken, Destination, Source
from integrations.sandbox import Sandbox
from tests.e2e.conftest import test_database_url, wait_until
from tests.e2e.test_printed_commands import README, README_HUB

pytestmark = [pytest.mark.e2e, pytest.mark.one_database]

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def api_blocks() -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    return [block for block in blocks if "Authorization: Bearer $TOKEN" in block]


def run_in_bash(script: str, hub: str, sandbox: Sandbox) -> str:
    """The block as printed, in one bash (so $TOKEN carries from line to line), against this test's hub."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cdphub.settings_test",
        "CDPHUB_DATABASE_URL": test_database_url(),
        "CDPHUB_SANDBOX_URL": sandbox.url,
    }
    script = script.replace(README_HUB, hub).replace(".venv/bin/python", sys.executable)
    ran = subprocess.run(
        ["bash", "-e", "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
    return ran.stdout


def answers(stdout: str) -> list[Any]:
    """Each JSON answer curl printed (they follow each other without newlines)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(stdout):
        if stdout[at].isspace():
            at += 1
            continue
        value, at = decoder.raw_decode(stdout, at)
        found.append(value)
    return found


def test_the_readme_walk_through_works_as_written(live_server, start_worker, sandbox: Sandbox, django_user_model):
    walkthrough, signal = api_blocks()
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")  # `make run`'s admin
    start_worker(CDPHUB_SANDBOX_URL=sandbox.url)

    source, destination, identify, deliveries = answers(run_in_bash(walkthrough, live_server.url, sandbox))

    assert (source["slug"], source["write_key"]) == ("shop", "wk_walkthrough_shop")
    assert destination["credentials_set"] == {"client_id": "set", "client_secret": "set"}
    assert identify == {"success": True}
    last_line, token = walkthrough.strip().splitlines()[-1], ApiToken.issue(admin, "again")[1]
    for _ in range(10):  # `sleep 2` is a person's pause; on a loaded machine the last line is run again, as one would
        [delivery] = deliveries["results"]
        if delivery["status"] != "pending":
            break
        deliveries = answers(run_in_bash(f"TOKEN={token}\n{last_line}", live_server.url, sandbox))[0]
    assert delivery["status"] == "delivered", delivery
    entries = requests.get(f"{sandbox.url}/_sandbox/journeys", timeout=5).json()["journeys"]
    assert [(e["eventDefinitionKey"], e["contactKey"]) for e in entries] == [("APIEvent-welcome", "user-7")]

    Source.objects.create(name="Website", slug="src_abc123")
    script = f"TOKEN=$(.venv/bin/python manage.py create_api_token --name signal)\n{signal}"
    [created] = answers(run_in_bash(script, live_server.url, sandbox))

    journey = Destination.objects.get(pk=created["id"])
    assert (journey.vendor, journey.config["subdomain"]) == ("sfmc_journey", "mc-abc123xyz")
    assert created["credentials"] == {"client_id": "set", "client_secret": "set"}
    assert wait_until(lambda: Delivery.objects.filter(status="delivered").count() == 1, 5, "nothing else changed")
