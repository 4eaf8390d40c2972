"""`manage.py purge --dry-run` says per table what would go (count, oldest, newest, cut-off) and what stays although
old, and deletes nothing; `manage.py purge` deletes it all and says what went."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from deliveries.engine import schema_fold
from deliveries.engine.purge_forecast import forecast
from deliveries.models import Attempt, Delivery, Event
from tests.deliveries.engine.test_purge import ago, old_delivery
from tests.factories import make_event

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[3]


def seed(source, destination):
    """Two deliveries due (40 and 35 days old, with 3 attempts), one still retrying (50 days), one recent; a rejected
    event due; and five attempts older than 14 days, whose exchanges are due for a summary."""
    old_delivery(source, destination, 50, status="retrying")
    first, _ = old_delivery(source, destination, 40, attempts=2)
    old_delivery(source, destination, 35, status="failed")
    old_delivery(source, destination, 20)
    old_delivery(source, destination, 2)
    make_event(source, received_at=ago(9), status=Event.Status.REJECTED, reject_reason="no userId")
    schema_fold.fold()
    return first


def test_the_forecast_counts_what_would_go_and_what_stays(source, destination):
    first = seed(source, destination)
    found = {f.table.name: f for f in forecast()}

    deliveries = found["deliveries"]
    assert (deliveries.rows, deliveries.children, deliveries.kept) == (2, 3, 1)
    assert deliveries.oldest == first.received_at
    assert deliveries.days == 30
    events = found["events"]
    assert (events.rows, events.kept) == (2, 1)  # the retrying delivery keeps its event
    assert (found["rejected_events"].rows, found["exchange_bodies"].rows) == (1, 5)
    assert found["test_deliveries"].rows == 0


def test_the_dry_run_reports_in_words_and_deletes_nothing(source, destination):
    seed(source, destination)
    counts = (Event.objects.count(), Delivery.objects.count(), Attempt.objects.count())
    out = io.StringIO()

    call_command("purge", "--dry-run", stdout=out)

    text = out.getvalue()
    assert (Event.objects.count(), Delivery.objects.count(), Attempt.objects.count()) == counts
    assert "Dry run: nothing is deleted" in text
    assert "Deliveries: kept 30 days (older than " in text
    assert "would go: 2 and their 3 attempts, from " in text
    assert "kept although older: 1 still waiting to be sent (pending, retrying or in flight)" in text
    assert "kept although older: 1 still have deliveries that are waiting or kept longer" in text
    assert "Rejected events: kept 7 days" in text
    assert "would be summarised: 5" in text


def test_the_purge_deletes_what_the_dry_run_announced(source, destination):
    seed(source, destination)
    out = io.StringIO()

    call_command("purge", stdout=out)

    text = out.getvalue()
    assert "Deliveries: 2 deleted and 3 attempts (kept 30 d: older than " in text
    assert "Attempts' exchanges: 2 summarised (headers and bodies removed) (kept 14 d" in text
    assert "Done: 8 rows deleted" in text  # 2 deliveries, their 3 attempts, their 2 events and the rejected one
    assert Delivery.objects.count() == 3
    assert Event.objects.filter(status="rejected").count() == 0
    assert all(f.rows == 0 for f in forecast() if not f.table.summarise)


def test_a_bad_retention_in_the_environment_is_refused_with_a_clear_message():
    for bad in ("0", "-3", "two weeks"):
        env = {**os.environ, "CDPHUB_RETENTION_EVENTS_DAYS": bad, "DJANGO_SETTINGS_MODULE": "cdphub.settings_test"}
        proc = subprocess.run(
            [sys.executable, "-c", "import django; django.setup()"],
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode != 0
        assert f"CDPHUB_RETENTION_EVENTS_DAYS must be a whole number of days, at least 1 (it is '{bad}')" in proc.stderr
