"""The circuit breaker: 50 retryable failures in a row (5xx, timeouts, refused connections, counted across
drains) open a destination's circuit with the reason and since when; nothing but the sweeper's probe is sent there
(30 s, doubling up to 10 min); a probe that gets through closes it and the backlog is delivered, nothing lost, no
retry deadline spent while it was open; other destinations keep delivering; a person can close it. Real HTTP
through `responses`."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
import responses
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from deliveries.engine import probe
from deliveries.engine.drain import drain
from deliveries.engine.record import record
from deliveries.engine.send import Sent
from deliveries.engine.slots import kick
from deliveries.engine.sweep import sweep
from deliveries.engine.timing import Timing
from deliveries.models import Attempt, Circuit, Delivery
from integrations.models import Destination
from integrations.vendors import Result
from tests.factories import make_delivery, make_event

URL = "https://hooks.example.com/in"
OTHER_URL = "https://other.example.com/in"


@pytest.fixture(autouse=True)
def failing_at_once(settings):
    """50 failures in a row open the circuit however fast they came (the 10 s minimum has its own test)."""
    settings.CIRCUIT_FAILING_SECONDS = 0


def backlog(destination: Destination, source, count: int) -> list[Delivery]:
    return [make_delivery(destination, make_event(source)) for _ in range(count)]


def circuit_of(destination: Destination) -> Circuit:
    return Circuit.objects.get(destination=destination)


def trip(destination: Destination, source, waiting: int = 10) -> list[Delivery]:
    """Fail 50 sends in a row with 503 so the circuit opens; `waiting` more deliveries are left untouched."""
    made = backlog(destination, source, settings.CIRCUIT_FAILURES + waiting)
    with responses.RequestsMock() as mock:
        mock.post(URL, status=503, body="upstream down")
        kick(destination.id)
        assert len(mock.calls) == settings.CIRCUIT_FAILURES
    return made


def probe_now(destination: Destination) -> None:
    Circuit.objects.filter(destination=destination).update(next_probe_at=timezone.now() - timedelta(seconds=1))


def statuses(destination: Destination) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Delivery.objects.filter(destination=destination).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_fifty_failures_in_a_row_open_the_circuit_and_stop_every_send(db, destination, source):
    made = trip(destination, source)

    state = circuit_of(destination)
    assert state.is_open
    assert state.failures == 50
    assert state.reason == "50 calls in a row failed over 0 s; the last: http_503: HTTP 503: upstream down"
    assert timezone.now() - state.opened_at < timedelta(seconds=10)
    assert state.next_probe_at - state.opened_at == timedelta(seconds=30)
    # Nothing is lost: the failed ones wait for a retry, the rest were never tried.
    assert statuses(destination) == {"retrying": 50, "pending": 10}
    assert all(d.attempt_log.count() == 0 for d in Delivery.objects.filter(id__in=[m.id for m in made[50:]]))
    # Nothing is sent there while it is open: no drain is started, and one started before stops at once.
    Delivery.objects.filter(destination=destination).update(next_attempt_at=timezone.now())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(URL, status=200)
        assert kick(destination.id, fill=True) == 0
        assert drain(destination.id, 0, "") in ("slot lost", "circuit open")
        assert sweep()["probed"] == 0  # the first probe is 30 s away
        assert not mock.calls


def test_failures_are_counted_across_drains_and_an_answer_starts_the_count_again(db, destination, source):
    timing = Timing.current()

    def send(outcomes: list[Result]) -> None:
        deliveries = backlog(destination, source, len(outcomes))
        Delivery.objects.filter(id__in=[d.id for d in deliveries]).update(status=Delivery.Status.IN_FLIGHT)
        now = timezone.now()
        sent = [Sent(Delivery.objects.get(id=d.id), r, now, now, 1) for d, r in zip(deliveries, outcomes, strict=True)]
        record(destination, sent, timing)

    down = Result("retry", error_code="connection_error", error_message="Connection failed: refused")
    bad_request = Result("failed", status_code=400, error_code="http_400", error_message="HTTP 400")
    lost = Result("retry", error_code="worker_lost", error_message="The worker stopped")
    send([down] * 30)  # one drain
    send([down] * 19 + [bad_request])  # another: the 400 is an answer, the count starts again
    assert circuit_of(destination).failures == 0
    send([down] * 49 + [lost])  # a lost worker says nothing about the destination
    assert (circuit_of(destination).failures, circuit_of(destination).is_open) == (49, False)
    send([down])
    assert circuit_of(destination).is_open
    assert circuit_of(destination).reason.endswith("connection_error: Connection failed: refused")


def test_a_short_burst_of_failures_does_not_open_the_circuit_a_run_of_ten_seconds_does(
    db, destination, source, settings
):
    """A busy stream to a receiver that blinks for a second fails 50 calls fast: that is no outage."""
    settings.CIRCUIT_FAILING_SECONDS = 10
    backlog(destination, source, 55)
    with responses.RequestsMock() as mock:
        mock.post(URL, status=503, body="upstream down")
        kick(destination.id)
    state = circuit_of(destination)
    assert (state.failures, state.is_open) == (55, False)  # the 5 more were sent too: nothing stopped
    assert timezone.now() - state.failing_since < timedelta(seconds=10)

    Circuit.objects.filter(destination=destination).update(failing_since=timezone.now() - timedelta(seconds=11))
    with responses.RequestsMock() as mock:
        mock.post(URL, status=503, body="upstream down")
        backlog(destination, source, 1)
        kick(destination.id)
    state = circuit_of(destination)
    assert state.is_open
    assert state.reason.startswith("56 calls in a row failed over 11 s; the last: http_503")


def test_a_probe_that_gets_through_closes_the_circuit_and_the_backlog_is_delivered(db, destination, source):
    trip(destination, source)
    probe_now(destination)

    with responses.RequestsMock() as mock:
        mock.post(URL, status=200)
        assert sweep()["probed"] == 1  # the probe, then (in tests, inline) the drains of the backlog

        state = circuit_of(destination)
        assert not state.is_open
        assert (state.failures, state.reason) == (0, "closed: a delivery got through")
        assert statuses(destination) == {"delivered": 60}  # retries included: nothing was lost
        assert len(mock.calls) == 60
    assert len(state.openings) == 1
    assert state.openings[0][1] is not None  # when it opened and closed: retry deadlines skip that time


def test_a_failed_probe_waits_twice_as_long_each_time_up_to_ten_minutes(db, destination, source):
    trip(destination, source)
    intervals = []
    with responses.RequestsMock() as mock:
        mock.post(URL, body=requests.exceptions.ReadTimeout("still down"))
        for _ in range(7):
            probe_now(destination)
            assert probe.probe_due() == 1
            assert probe.probe_due() == 0  # one probe at a time, however many sweepers
            state = circuit_of(destination)
            intervals.append(state.probe_interval)
            assert state.next_probe_at > timezone.now() + timedelta(seconds=state.probe_interval - 5)
        assert len(mock.calls) == 7  # one delivery per probe, nothing else
    assert intervals == [60, 120, 240, 480, 600, 600, 600]
    assert circuit_of(destination).is_open
    # Each probe took the delivery due first: a failed one moves back, the next probe tries another.
    probed = Attempt.objects.filter(delivery__destination=destination, error_code="timeout")
    assert probed.values("delivery").distinct().count() == 7


def test_time_behind_an_open_circuit_does_not_count_towards_the_retry_deadline(db, destination, source):
    """An event received 5 h ago with a 4 h deadline, its destination's circuit open for the last 3 h: a failed
    probe leaves it retrying (it has had 2 h of retries against an answering destination), it does not fail."""
    now = timezone.now()
    old = make_delivery(destination, make_event(source, received_at=now - timedelta(hours=5)))
    Circuit.objects.create(
        destination=destination,
        failures=50,
        opened_at=now - timedelta(hours=3),
        reason="50 calls in a row failed",
        next_probe_at=now - timedelta(seconds=1),
        probe_interval=600,
        openings=[[(now - timedelta(hours=3)).isoformat(), None]],
    )
    with responses.RequestsMock() as mock:
        mock.post(URL, status=502)
        assert probe.probe_due() == 1
    old.refresh_from_db()
    assert old.status == Delivery.Status.RETRYING
    assert (old.attempts, old.error_code) == (1, "http_502")

    # Closed for an hour since (circuit open from -4 h to -1 h): the last hour counts, it still has time.
    span = [(now - timedelta(hours=4)).isoformat(), (now - timedelta(hours=1)).isoformat()]
    Circuit.objects.filter(destination=destination).update(opened_at=None, failures=0, openings=[span])
    Delivery.objects.filter(id=old.id).update(next_attempt_at=timezone.now())
    with responses.RequestsMock() as mock:
        mock.post(URL, status=502)
        kick(destination.id)
    old.refresh_from_db()
    assert old.status == Delivery.Status.RETRYING

    # Without the circuit's time it is past its deadline: the next failure gives up.
    Circuit.objects.filter(destination=destination).update(opened_at=None, failures=0, openings=[])
    Delivery.objects.filter(id=old.id).update(next_attempt_at=timezone.now())
    with responses.RequestsMock() as mock:
        mock.post(URL, status=502)
        kick(destination.id)
    old.refresh_from_db()
    assert old.status == Delivery.Status.FAILED
    assert "retry deadline" in old.error_message


def test_another_destination_keeps_delivering_while_one_circuit_is_open(db, destination, source):
    other = Destination.objects.create(name="Other", slug="other", vendor="webhook", config={"url": OTHER_URL})
    other.sources.add(source)
    trip(destination, source)
    theirs = backlog(other, source, 20)

    with responses.RequestsMock() as mock:
        mock.post(OTHER_URL, status=200)
        sweep()  # the open circuit's backlog is skipped; the other destination's is sent
        assert len(mock.calls) == 20
    assert all(Delivery.objects.get(id=d.id).status == Delivery.Status.DELIVERED for d in theirs)
    assert not Circuit.objects.filter(destination=other, opened_at__isnull=False).exists()
    assert statuses(destination) == {"retrying": 50, "pending": 10}


def test_a_probe_with_nothing_waiting_closes_the_circuit(db, destination, source):
    trip(destination, source, waiting=0)
    Delivery.objects.filter(destination=destination).update(status=Delivery.Status.FAILED)
    probe_now(destination)

    assert probe.probe_due() == 1

    assert circuit_of(destination).reason == "closed: no delivery was waiting to probe with"
    assert not circuit_of(destination).is_open


# The pages ----------------------------------------------------------------------------------------


def test_event_delivery_shows_the_open_circuit_and_closes_it_by_hand(admin_client, destination, source):
    trip(destination, source)
    page = reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk])

    html = admin_client.get(page).content.decode()
    assert '<span class="ed-state ed-state-circuit-open">Circuit open</span>' in html
    assert "50 calls in a row failed over 0 s; the last: http_503: HTTP 503: upstream down" in html
    assert f"since {timezone.localtime(circuit_of(destination).opened_at):%Y-%m-%d %H:%M:%S}" in html
    assert "Close circuit and resume now" in html
    assert "cut to 500/s after HTTP 503 Service Unavailable" in html  # the adaptive rate, beside it
    index = admin_client.get(reverse("admin:deliveries_delivery_event_delivery_index")).content.decode()
    assert "Circuit open</span>" in index

    close_url = reverse("admin:deliveries_delivery_event_delivery_close_circuit", args=[destination.pk])
    with responses.RequestsMock() as mock:
        mock.post(URL, status=200)
        response = admin_client.post(close_url)
        assert len(mock.calls) == 60  # the whole backlog, at once
    assert response.status_code == 302
    assert circuit_of(destination).reason == "closed by hand by admin"
    assert statuses(destination) == {"delivered": 60}
    html = admin_client.get(page).content.decode()
    assert "Close circuit and resume now" not in html
    assert "Circuit closed by hand by admin" in html


def test_the_destination_list_shows_the_open_circuit_and_resume_delivery_closes_it(
    admin_client, destination, source, django_capture_on_commit_callbacks
):
    trip(destination, source)
    changelist = reverse("admin:integrations_destination_changelist")

    html = admin_client.get(changelist).content.decode()
    assert '<span class="state state-circuit-open" title="Paused automatically since' in html
    assert "50 calls in a row failed" in html

    with responses.RequestsMock() as mock:
        mock.post(URL, status=200)
        with django_capture_on_commit_callbacks(execute=True):  # the kick runs once the action has committed
            admin_client.post(changelist, {"action": "resume_delivery", "_selected_action": [destination.pk]})
        assert len(mock.calls) == 60
    assert not circuit_of(destination).is_open
    assert circuit_of(destination).reason == "closed by hand: delivery resumed in the admin"
    assert statuses(destination) == {"delivered": 60}
    html = admin_client.get(reverse("admin:integrations_destination_change", args=[destination.pk])).content
    assert b"state-circuit-open" not in html


def test_the_manual_pause_stays_apart_from_the_circuit(db, destination, source):
    trip(destination, source)
    Destination.objects.filter(id=destination.id).update(paused=True)
    probe_now(destination)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(URL, status=200)
        assert probe.probe_due() == 1  # the probe starts, and sees the manual pause: nothing is sent
        assert not mock.calls
    assert circuit_of(destination).is_open
    assert Destination.objects.get(id=destination.id).paused
