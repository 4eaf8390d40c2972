"""Many clients at once against a real threaded server over the SQLite file: no lock errors, no lost events."""

from __future__ import annotations

import gzip
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
import requests

from deliveries.models import Event

WRITE_KEY = "wk_test_website"
THREADS = 8
REQUESTS_PER_THREAD = 50
BATCH_SIZE = 10


def plan(thread: int) -> list[tuple[str, dict[str, Any], bool]]:
    """The requests one client sends: (endpoint, body, gzip?).

    Every 5th request is a batch of 9 events of its own plus one whose messageId every client sends; the others
    are single tracks, every 10th of those with a messageId every client sends, some gzipped, some authenticated
    by writeKey in the body instead of Basic auth.
    """
    out: list[tuple[str, dict[str, Any], bool]] = []
    for i in range(REQUESTS_PER_THREAD):
        if i % 5 == 0:
            items = [
                {"type": "track", "userId": f"u{thread}", "event": "Viewed", "messageId": f"t{thread}-r{i}-e{j}"}
                for j in range(BATCH_SIZE - 1)
            ]
            items.append({"type": "identify", "userId": f"u{thread}", "messageId": f"shared-batch-{i}"})
            out.append(("batch", {"batch": items, "sentAt": "2024-05-01T10:00:00.000Z"}, False))
        else:
            message_id = f"shared-single-{i}" if i % 10 == 3 else f"t{thread}-r{i}"
            body: dict[str, Any] = {"userId": f"u{thread}", "event": "Clicked", "messageId": message_id}
            if i % 10 == 1:
                body["writeKey"] = WRITE_KEY
            out.append(("track", body, i % 10 == 7))
    return out


def expected_rows() -> int:
    ids: set[str] = set()
    for thread in range(THREADS):
        for _, body, _ in plan(thread):
            ids.update(item["messageId"] for item in body.get("batch", [body]))
    return len(ids)


def run_client(base_url: str, thread: int, start: threading.Barrier) -> list[tuple[int, str]]:
    answers: list[tuple[int, str]] = []
    with requests.Session() as session:
        start.wait()
        for endpoint, body, gzipped in plan(thread):
            data = orjson.dumps(body)
            headers = {"Content-Type": "application/json"}
            if gzipped:
                data = gzip.compress(data)
                headers["Content-Encoding"] = "gzip"
            auth = None if "writeKey" in body else (WRITE_KEY, "")
            response = session.post(f"{base_url}/v1/{endpoint}", data=data, headers=headers, auth=auth, timeout=60)
            answers.append((response.status_code, response.text))
    return answers


@pytest.mark.e2e
def test_eight_clients_posting_at_once_all_get_200_and_every_event_is_stored_once(
    live_server, transactional_db, source
):
    start = threading.Barrier(THREADS)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(run_client, live_server.url, t, start) for t in range(THREADS)]
        answers = [answer for future in futures for answer in future.result()]

    assert len(answers) == THREADS * REQUESTS_PER_THREAD
    assert not [text for _, text in answers if "locked" in text.lower()]
    assert {status for status, _ in answers} == {200}
    for _, text in answers:
        body = orjson.loads(text)
        assert body["success"] is True
        assert "rejected" not in body
    assert expected_rows() == THREADS * (REQUESTS_PER_THREAD // 5 * (BATCH_SIZE - 1) + 35) + 5 + 10
    assert Event.objects.filter(status=Event.Status.ACCEPTED, source=source).count() == expected_rows()
    assert not Event.objects.filter(status=Event.Status.REJECTED).exists()
    shared = Event.objects.filter(message_id__startswith="shared-")
    assert shared.count() == 15
    assert set(shared.values_list("message_id", flat=True)) == {
        *(f"shared-single-{i}" for i in range(3, REQUESTS_PER_THREAD, 10)),
        *(f"shared-batch-{i}" for i in range(0, REQUESTS_PER_THREAD, 5)),
    }
