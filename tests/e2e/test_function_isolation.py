"""A destination function that never ends (an infinite loop) or bombs memory, in the real worker: each invocation
ends at its limit with a clear error on the attempt, and the worker keeps delivering every other destination's
events meanwhile."""

from __future__ import annotations

import time

import pytest

from deliveries.models import Attempt
from integrations.models import Destination, Function, Source
from tests.e2e.conftest import post, statuses, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.one_database]

LOOP = "async function onIdentify(event, settings) {\n  while (true) {}\n}\n"
BOMB = (
    "async function onIdentify(event, settings) {\n  const a = [];\n  while (true) a.push(new Array(1e5).fill(1));\n}\n"
)


def function_destination(source: Source, slug: str, code: str) -> Destination:
    Function.objects.create(name=slug, slug=slug, kind="destination", code=code)
    destination = Destination.objects.create(
        name=slug, slug=slug, vendor="function", config={"function": slug}, filter={"types": ["identify"]}
    )
    destination.sources.add(source)
    return destination


def test_a_looping_and_a_memory_hungry_function_do_not_hold_up_another_destination(
    start_worker, receivers, transactional_db
):
    app = Source.objects.create(name="App", slug="app", write_key="wk_e2e_isolation_app")
    loop = function_destination(app, "loops", LOOP)
    bomb = function_destination(app, "bombs", BOMB)
    website = Source.objects.create(name="Website", slug="website", write_key="wk_e2e_isolation")
    receiver = receivers()
    hook = Destination.objects.create(name="Hook", slug="hook", vendor="webhook", config={"url": receiver.url})
    hook.sources.add(website)
    start_worker(CDPHUB_FUNCTION_TIMEOUT="2", CDPHUB_FUNCTION_MEMORY_MB="32")

    post(app, [{"type": "identify", "userId": f"u-{i}", "messageId": f"app-{i}"} for i in range(30)])
    wait_until(lambda: Attempt.objects.filter(delivery__destination=loop).exists(), 20, "the loop tried once")
    started = time.monotonic()  # the looping function's drains are running now
    post(website, [{"type": "identify", "userId": f"u-{i}", "messageId": f"web-{i}"} for i in range(30)])
    wait_until(lambda: statuses(hook).get("delivered") == 30, 20, "the webhook's 30 events delivered")
    took = time.monotonic() - started
    wait_until(lambda: Attempt.objects.filter(delivery__destination=bomb).exists(), 20, "the bomb tried once")
    print(f"the webhook's 30 events took {took:.2f} s beside the looping function")

    assert took < 15, f"the webhook waited {took:.1f} s behind the looping function"
    looped = Attempt.objects.filter(delivery__destination=loop).first()
    assert (looped.outcome, looped.error_code) == ("retry", "function_timeout")
    assert "2 s limit" in looped.error_message
    bombed = Attempt.objects.filter(delivery__destination=bomb).first()
    assert (bombed.outcome, bombed.error_code) == ("failed", "memory_limit")
    assert "32 MB" in bombed.error_message
