"""The state the hub gives its vendors, kept in rows so every worker shares it: the lock and the memo (the token
store is tested with SharedToken, in vendors/test_oauth.py)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from integrations.models import DatabaseState, VendorLock
from integrations.models.vendor_state import MEMO
from integrations.vendors.state import LockBusy, MemoryState


@pytest.mark.django_db(transaction=True)
def test_the_lock_lets_one_worker_at_a_time_hold_a_key_and_frees_it_after() -> None:
    in_flight, most = [0], [0]
    guard = threading.Lock()

    def worker() -> None:
        try:
            with DatabaseState(None).lock("marketo-upsert", seconds=5):
                with guard:
                    in_flight[0] += 1
                    most[0] = max(most[0], in_flight[0])
                time.sleep(0.2)
                with guard:
                    in_flight[0] -= 1
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert most[0] == 1
    assert VendorLock.objects.get(key="marketo-upsert").lease_until is None, "the lock is released after the call"


@pytest.mark.django_db
def test_a_lock_held_past_twice_its_lease_by_a_live_holder_says_busy() -> None:
    VendorLock.objects.create(key="k", lease="other", lease_until=timezone.now() + timedelta(hours=1))

    with pytest.raises(LockBusy), DatabaseState(None).lock("k", seconds=0.05):
        pass


@pytest.mark.django_db
def test_the_lock_of_a_holder_that_died_is_taken_once_its_lease_has_passed() -> None:
    VendorLock.objects.create(key="k", lease="dead", lease_until=timezone.now() - timedelta(seconds=1))

    with DatabaseState(None).lock("k", seconds=1):
        assert VendorLock.objects.get(key="k").lease not in ("", "dead")


def test_every_database_state_of_a_process_shares_one_memo_and_a_memory_state_has_its_own() -> None:
    DatabaseState(1).memo.put(("lead", "ada"), 5, 60)
    try:
        assert DatabaseState(2).memo.get(("lead", "ada")) == 5
        assert MemoryState().memo.get(("lead", "ada")) is None
    finally:
        MEMO.forget(("lead", "ada"))


def test_a_memo_entry_is_gone_after_its_lifetime() -> None:
    state = MemoryState()
    state.memo.put("k", 1, -1)

    assert state.memo.get("k") is None
