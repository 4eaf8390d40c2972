"""The ways out of the sandbox a function may try, on purpose or by mistake: each ends that invocation with a clear
error, and the process keeps serving every other function at full speed (a warm context of another owner answers
in milliseconds right after)."""

from __future__ import annotations

import pytest

from integrations.functions import runtime
from integrations.functions.fetch import Fetcher
from integrations.functions.runtime import Invocation, Sandbox, code_problems, sandbox_for
from tests.receiver import Receiver

EVENT = {"type": "track", "event": "Order Completed", "userId": "user-1"}
FAST_MS = 50


@pytest.fixture
def other() -> Sandbox:
    """Another destination's warm context, loaded before the escape is tried (the conftest drops it after)."""
    return sandbox_for("destination:other", "async function onTrack(event) { return event.event; }", {})


def still_serves(other: Sandbox) -> None:
    run = other.invoke("onTrack", [EVENT, {}], Fetcher([]))
    assert (run.value, run.error) == ("Order Completed", None)
    assert run.duration_ms < FAST_MS


def escape(code: str, *, timeout: float | None = None, memory_mb: int | None = None) -> Invocation:
    sandbox = Sandbox(code, memory_mb=memory_mb)
    try:
        return sandbox.invoke("onTrack", [EVENT, {}], Fetcher([]), timeout=timeout)
    finally:
        sandbox.close()


def test_an_infinite_loop_is_stopped_at_the_time_limit(other: Sandbox) -> None:
    run = escape("async function onTrack() { while (true) {} }", timeout=0.5)

    assert run.error is not None
    assert (run.error.name, run.error.code) == ("Timeout", "function_timeout")
    assert run.error.message == "the function ran past its 0.5 s limit"
    assert 500 <= run.duration_ms < 1500
    still_serves(other)


# mini-racer runs the code after an await outside the eval it can stop: the loop spins until the context is freed,
# and the stopped eval's late report to the closed event loop is printed as an unraisable exception.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_infinite_loop_after_an_awaited_fetch_is_stopped_too(other: Sandbox) -> None:
    sandbox = Sandbox("async function onTrack() { await fetch('https://api.example.com/'); while (true) {} }")
    try:
        run = sandbox.invoke("onTrack", [EVENT, {}], Fetcher([], send=False), timeout=0.5)
    finally:
        sandbox.close()

    assert run.error is not None
    assert run.error.code == "function_timeout"
    assert run.duration_ms < 1500
    still_serves(other)


def test_the_function_time_limit_comes_from_the_settings(settings, other: Sandbox) -> None:
    settings.FUNCTION_TIMEOUT = 0.3

    run = escape("async function onTrack() { for (;;) {} }")

    assert run.error is not None
    assert run.error.message == "the function ran past its 0.3 s limit"
    assert run.duration_ms < 1000
    still_serves(other)


def test_a_memory_bomb_ends_with_the_memory_limit(other: Sandbox) -> None:
    run = escape(
        "async function onTrack() { const all = []; while (true) all.push(new Array(100000).fill(1)); }", memory_mb=32
    )

    assert run.error is not None
    assert run.error.code == "memory_limit"
    assert run.error.message == "the function used more than 32 MB of memory"
    still_serves(other)


def test_ten_megabytes_of_console_log_end_the_invocation(other: Sandbox) -> None:
    run = escape("async function onTrack() { console.log('x'.repeat(10 * 1024 * 1024)); return 'logged'; }")

    assert run.value is None
    assert run.error is not None
    assert run.error.code == "console_limit"
    assert run.error.message.startswith("console output passed 1 MB in one invocation")
    assert sum(len(line["message"]) for line in run.logs) < 20_000  # nothing of the 10 MB is kept
    still_serves(other)


def test_a_fetch_to_a_private_address_is_refused_and_sends_nothing(settings, other: Sandbox) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    with Receiver() as receiver:
        run = escape(
            f"""async function onTrack() {{
              try {{ await fetch('{receiver.url}'); }} catch (error) {{ return 'caught, carried on'; }}
            }}"""
        )

        assert receiver.requests == []
    assert run.value is None  # the code may not catch its way past the guard
    assert run.error is not None
    assert run.error.code == "private_address"
    assert run.error.message == (
        "fetch refused: 127.0.0.1 resolves to a private address (127.0.0.1); cdphub does not send there."
    )
    still_serves(other)


def test_a_promise_that_never_resolves_is_reported_at_once_not_after_the_time_limit(other: Sandbox) -> None:
    run = escape("async function onTrack() { await new Promise(() => {}); }", timeout=5)

    assert run.error is not None
    assert run.error.code == "never_settled"
    assert run.error.message.startswith("the handler's promise never settled")
    assert run.duration_ms < FAST_MS
    still_serves(other)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("require('fs').readFileSync('/etc/passwd')", "require('fs') is not available: functions have no modules."),
        ("return process.env", "process is not available: functions cannot reach the host."),
        ("setTimeout(() => {}, 10)", "setTimeout is not available: functions have no timers"),
        ("setInterval(() => {}, 10)", "setInterval is not available: functions have no timers"),
    ],
    ids=["require", "process", "setTimeout", "setInterval"],
)
def test_the_hosts_modules_process_and_timers_are_forbidden(code: str, message: str, other: Sandbox) -> None:
    run = escape(f"async function onTrack() {{ {code}; }}")

    assert run.error is not None
    assert run.error.code == "forbidden"
    assert run.error.message.startswith(message)
    still_serves(other)


def test_a_forbidden_global_stays_forbidden_when_the_code_catches_it(other: Sandbox) -> None:
    run = escape("async function onTrack() { try { require('child_process'); } catch (e) {} return 'carried on'; }")

    assert run.value is None
    assert run.error is not None
    assert run.error.code == "forbidden"
    still_serves(other)


def test_a_dynamic_import_is_refused_with_a_clear_error(other: Sandbox) -> None:
    run = escape("async function onTrack() { const fs = await import('fs'); return fs.readFileSync('/etc/passwd'); }")

    assert run.value is None
    assert run.error is not None
    assert run.error.code == "forbidden"
    assert run.error.message.startswith("import() is not available: functions have no modules.")
    still_serves(other)


def test_the_functions_own_not_supported_error_is_not_taken_for_an_import(other: Sandbox) -> None:
    run = escape("async function onTrack() { throw new Error('Not supported'); }")

    assert run.error is not None
    assert (run.error.code, run.error.message) == ("function_error", "Not supported")


def test_more_than_fifty_fetches_in_one_invocation_end_it(other: Sandbox) -> None:
    sandbox = Sandbox("async function onTrack() { for (;;) await fetch('https://api.example.com/'); }")
    try:
        run = sandbox.invoke("onTrack", [EVENT, {}], Fetcher([], send=False))
    finally:
        sandbox.close()

    assert run.error is not None
    assert run.error.code == "too_many_fetches"
    assert len(run.exchanges) == 50
    still_serves(other)


def test_an_infinite_loop_at_the_top_level_is_refused_on_save(monkeypatch, other: Sandbox) -> None:
    monkeypatch.setattr(runtime, "LOAD_SECONDS", 0.2)

    problems = code_problems("while (true) {}\nasync function onTrack() {}", "destination")

    assert problems == ["code: Timeout: the code's top level ran past 0.2 s while loading the code"]
    still_serves(other)


# The owner's next invocation ---------------------------------------------------------------------------

STATEFUL = """let calls = 0;
async function onTrack(event) {
  calls += 1;
  if (event.event === 'loop') while (true) {}
  if (event.event === 'bomb') { const all = []; while (true) all.push(new Array(100000).fill(calls)); }
  if (event.event === 'log') console.log('x'.repeat(2 * 1024 * 1024));
  return calls;
}"""


@pytest.mark.parametrize("what", ["loop", "bomb", "log"])
def test_after_a_limit_ends_a_run_the_owner_gets_a_fresh_working_context(what: str, settings) -> None:
    settings.FUNCTION_TIMEOUT = 0.3
    settings.FUNCTION_MEMORY_MB = 32
    first = sandbox_for("destination:1", STATEFUL, {})
    assert first.invoke("onTrack", [EVENT, {}], Fetcher([])).value == 1

    failed = first.invoke("onTrack", [{**EVENT, "event": what}, {}], Fetcher([]))
    assert failed.error is not None
    again = sandbox_for("destination:1", STATEFUL, {})
    run = again.invoke("onTrack", [EVENT, {}], Fetcher([]))

    assert again is not first
    assert (run.value, run.error) == (1, None)  # module state starts over: it may have been left half-changed
    assert run.duration_ms < FAST_MS


def test_a_sandbox_closed_by_a_limit_refuses_to_run_again() -> None:
    sandbox = Sandbox("async function onTrack() { while (true) {} }")
    sandbox.invoke("onTrack", [EVENT, {}], Fetcher([]), timeout=0.2)

    with pytest.raises(RuntimeError, match="take a new one from sandbox_for"):
        sandbox.invoke("onTrack", [EVENT, {}], Fetcher([]))
