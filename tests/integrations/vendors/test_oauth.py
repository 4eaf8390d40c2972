"""The shared OAuth token over AccessToken rows (the hub's DatabaseState): one fetch per expiry for every
worker, one replacement per bad token, refused credentials remembered for a while, the token encrypted at rest."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from integrations.models import AccessToken
from integrations.models.vendor_state import DatabaseTokens
from integrations.vendors import oauth
from integrations.vendors.contract import DeliveryError
from integrations.vendors.oauth import FAILURE_MEMORY, SharedToken, token_key, use_until

KEY = token_key("test", "https://auth.example.com", "client-1", "", "secret-1")


class Fetcher:
    """A token endpoint: counts calls, hands out token-1, token-2, … and can be slow or refuse."""

    def __init__(self, expires_in: float = 1079, delay: float = 0.0, error: Exception | None = None) -> None:
        self.calls = 0
        self.expires_in = expires_in
        self.delay = delay
        self.error = error
        self.lock = threading.Lock()

    def __call__(self) -> tuple[dict[str, Any], float]:
        with self.lock:
            self.calls += 1
            number = self.calls
        time.sleep(self.delay)
        if self.error:
            raise self.error
        return {"access_token": f"token-{number}"}, self.expires_in


def worker(fetch: Fetcher, key: str = KEY) -> SharedToken:
    """What each worker process builds: its own SharedToken over the same row."""
    return SharedToken(key, DatabaseTokens(None), fetch, timeout=1.0)


@pytest.mark.django_db
def test_a_token_is_fetched_once_and_kept_in_memory_and_in_the_row(django_assert_num_queries: Any) -> None:
    fetch = Fetcher()
    shared = worker(fetch)

    first = shared.get()
    with django_assert_num_queries(0):
        again = shared.get()

    assert first.access_token == again.access_token == "token-1"
    assert fetch.calls == 1
    row = AccessToken.objects.get(key=KEY)
    assert row.value == {"access_token": "token-1"}
    assert row.expires_at == first.use_until
    assert (row.lease, row.lease_until) == ("", None)
    assert worker(fetch).get().access_token == "token-1", "another worker reads the row"
    assert fetch.calls == 1


@pytest.mark.django_db
def test_replacing_a_bad_token_fetches_exactly_once_for_every_worker() -> None:
    fetch = Fetcher()
    one, two = worker(fetch), worker(fetch)
    bad = one.get().access_token
    two.get()

    replaced = one.get(replacing=bad)
    also = two.get(replacing=bad)

    assert replaced.access_token == also.access_token == "token-2"
    assert fetch.calls == 2, "the second worker finds the replacement in the row"
    assert one.get(replacing=bad).access_token == "token-2"
    assert fetch.calls == 2


@pytest.mark.django_db
def test_a_stale_row_is_refreshed() -> None:
    fetch = Fetcher()
    worker(fetch).get()
    AccessToken.objects.filter(key=KEY).update(expires_at=timezone.now() - timedelta(seconds=1))

    token = worker(fetch).get()

    assert token.access_token == "token-2"
    assert fetch.calls == 2
    assert AccessToken.objects.get(key=KEY).value == {"access_token": "token-2"}


@pytest.mark.django_db
def test_a_token_in_memory_past_its_use_until_is_refreshed(monkeypatch: pytest.MonkeyPatch) -> None:
    fetch = Fetcher(expires_in=1079)
    shared = worker(fetch)
    shared.get()
    later = use_until(1079) + timedelta(seconds=1)
    monkeypatch.setattr(oauth.timezone, "now", lambda: later)

    assert shared.get().access_token == "token-2"
    assert shared.get().access_token == "token-2"
    assert fetch.calls == 2


def test_tokens_are_used_until_five_minutes_or_a_quarter_of_their_life_before_expiry() -> None:
    now = timezone.now()

    assert use_until(1079, now) == now + timedelta(seconds=1079 - 269.75)
    assert use_until(3600, now) == now + timedelta(seconds=3300)
    assert use_until(60, now) == now + timedelta(seconds=45)
    assert use_until(0, now) == now


def test_the_key_hides_the_secret_and_changes_with_it() -> None:
    assert "secret-1" not in KEY
    assert len(KEY) == 64
    assert token_key("test", "https://auth.example.com", "client-1", "", "secret-2") != KEY
    assert token_key("test", "https://auth.example.com", "client-1", "5001234", "secret-1") != KEY


@pytest.mark.django_db
def test_a_refused_credential_is_remembered_and_asked_again_later(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = DeliveryError("HTTP 401: invalid_client", code="invalid_credentials")
    fetch = Fetcher(error=refused)
    shared = worker(fetch)

    for _ in range(3):
        with pytest.raises(DeliveryError) as caught:
            shared.get()
        assert caught.value is refused
    assert fetch.calls == 1
    assert AccessToken.objects.get(key=KEY).lease == "", "the lease is given back so others are not kept waiting"

    clock = time.monotonic() + FAILURE_MEMORY + 1
    monkeypatch.setattr(oauth.time, "monotonic", lambda: clock)
    fetch.error = None
    assert shared.get().access_token == "token-2"


@pytest.mark.django_db
def test_a_passing_failure_is_not_remembered() -> None:
    fetch = Fetcher(error=DeliveryError("No answer within 1 s", code="timeout", retryable=True))
    shared = worker(fetch)

    with pytest.raises(DeliveryError):
        shared.get()
    fetch.error = None

    assert shared.get().access_token == "token-2"


@pytest.mark.django_db
def test_the_lease_of_a_crashed_fetcher_is_taken_over_once_it_expires() -> None:
    AccessToken.objects.create(
        key=KEY, value={}, lease="crashed", lease_until=timezone.now() - timedelta(seconds=1), destination=None
    )
    fetch = Fetcher()

    assert worker(fetch).get().access_token == "token-1"
    assert fetch.calls == 1


@pytest.mark.django_db
def test_the_token_is_encrypted_in_the_row() -> None:
    worker(Fetcher()).get()

    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM integrations_accesstoken WHERE key = %s", [KEY])
        [raw] = cursor.fetchone()

    assert "token-1" not in raw
    assert "access_token" not in raw


@pytest.mark.django_db(transaction=True)
def test_two_workers_needing_a_token_at_once_cause_one_fetch() -> None:
    fetch = Fetcher(delay=0.3)  # slow enough that the second worker arrives during the first one's fetch
    start = threading.Barrier(3)
    got: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            got.append(worker(fetch).get().access_token)
        except BaseException as exc:  # reported below: an exception in a thread would otherwise vanish
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == []
    assert got == ["token-1"] * 3
    assert fetch.calls == 1
