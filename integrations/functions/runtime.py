"""The functions runtime: Segment-style JavaScript in embedded V8 (mini-racer), one warm context per function
user (a destination, a source, a destination's insert function), the host answering its `fetch` calls.

No node process and no network of the code's own: the only way out is `fetch`, which the host makes with the
vendors' HTTP client (integrations/vendors/http.py: the private-address guard, proxies, a timeout, and each
call recorded as an exchange with secrets redacted). There is no event loop: the host starts a handler, reads
the fetch calls it queued, answers them, and repeats until the handler's promise settles; a promise that is
waiting on nothing can never settle, which is said at once rather than after the time limit.

A context is kept between invocations, as Segment keeps a warm instance, so module-level state (an OAuth token
cache) works; it is rebuilt when the code or the settings change, and after a memory or console limit or a
time-out leaves it in doubt. Contexts are created lazily in the process that runs them: V8 is not fork-safe.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings as django_settings
from py_mini_racer import JSEvalException, JSOOMException, JSTimeoutException, MiniRacer
from py_mini_racer._context import get_running_loop_or_none

from integrations.functions.fetch import Fetcher

JS = Path(__file__).parent / "js"
PRELUDE = "\n;\n".join(
    (JS / name).read_text(encoding="utf-8") for name in ("url.min.js", "lodash.min.js", "prelude.js")
)
SOURCE_URL = "\n//# sourceURL=function.js\n"
HANDLERS = {
    "destination": ("onTrack", "onIdentify", "onPage", "onScreen", "onGroup", "onAlias", "onDelete", "onBatch"),
    # An insert function runs event by event (its onBatch is not called): it needs a per-event handler.
    "insert": ("onTrack", "onIdentify", "onPage", "onScreen", "onGroup", "onAlias", "onDelete"),
    "source": ("onRequest",),
}
HANDLER_OF_TYPE = {
    "track": "onTrack",
    "identify": "onIdentify",
    "page": "onPage",
    "screen": "onScreen",
    "group": "onGroup",
    "alias": "onAlias",
    "delete": "onDelete",
}
MAX_CONTEXTS = 64  # warm contexts per process (a few MB each); the least recently used is dropped beyond
LOAD_SECONDS = 1.0  # the code's top level (declarations) must run in this long


def limits() -> dict[str, Any]:
    return {
        "timeout": float(getattr(django_settings, "FUNCTION_TIMEOUT", 5.0)),
        "memory_mb": int(getattr(django_settings, "FUNCTION_MEMORY_MB", 128)),
    }


@dataclass
class FunctionError:
    """How an invocation ended when it did not return: Segment's error class (name), cdphub's code, the
    message, and the first stack line in the function's own code ("at onIdentify (function.js:25:33)")."""

    name: str
    code: str
    message: str
    stack: str = ""

    @property
    def text(self) -> str:
        where = f" ({self.stack})" if self.stack else ""
        return f"{self.name}: {self.message}{where}"


@dataclass
class Invocation:
    value: Any = None
    error: FunctionError | None = None
    logs: list[dict[str, str]] = field(default_factory=list)
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    emitted: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: float = 0.0
    missing: bool = False  # the code has no handler of that name


# V8 here has no module loader: import('fs') rejects with a bare "Not supported", which says nothing to the
# person reading the attempt; code that uses import() gets this instead.
DYNAMIC_IMPORT = re.compile(r"\bimport\s*\(")
IMPORT_REFUSED = (
    "import() is not available: functions have no modules. "
    "Use the globals: fetch, Headers, URL, URLSearchParams, btoa, atob, _ (lodash), cache, console"
)

ERROR_CODES = {
    "RetryError": "function_retry",
    "EventNotSupported": "event_not_supported",
    "InvalidEventPayload": "message_rejected",
    "ValidationError": "message_rejected",
    "DropEvent": "dropped",
}


class Sandbox:
    """One V8 context with the prelude and one function's code loaded; invoked one call at a time."""

    def __init__(self, code: str, memory_mb: int | None = None) -> None:
        self.lock = threading.Lock()
        self.broken = False
        self.memory = (memory_mb or limits()["memory_mb"]) * 1024 * 1024
        self.ctx = new_racer()
        self.ctx.set_hard_memory_limit(self.memory)
        self.ctx.eval(PRELUDE)
        self.load_error: FunctionError | None = None
        self.imports = DYNAMIC_IMPORT.search(code) is not None
        try:
            self.ctx.eval(code + SOURCE_URL, timeout_sec=LOAD_SECONDS)
        except Exception as exc:  # the error is the invocation's, every time until the code is fixed
            self.load_error = js_error(exc, "while loading the code")
            if isinstance(exc, JSOOMException | JSTimeoutException):
                self.close()

    def has(self, name: str) -> bool:
        with self.lock:
            return (
                self.load_error is None
                and not self.broken
                and self.ctx.eval(f"__cdphub.has({orjson.dumps(name).decode()})") is True
            )

    def close(self) -> None:
        """Close the context now or, while another thread runs it (a new version replaced it, the cache is full),
        at the end of that run: closed under a running eval, mini-racer never answers that thread."""
        self.broken = True
        if self.lock.acquire(blocking=False):
            try:
                self._close()
            finally:
                self.lock.release()

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            # A run V8 was told to stop reports back to mini-racer's event loop a moment later: a no-op waits for
            # that, else the report finds the loop closed and "Event loop is closed" is printed from its callback.
            self.ctx.eval("0", timeout_sec=0.1)
        with contextlib.suppress(Exception):  # a context that fails to close is dropped all the same
            self.ctx.close()

    def invoke(self, handler: str, args: list[Any], fetcher: Fetcher, timeout: float | None = None) -> Invocation:
        """Run `handler(*args)` to its end: its value or error, console lines, fetch exchanges, emitted events."""
        with self.lock:
            started = time.monotonic()
            limit = timeout or limits()["timeout"]
            result = self._invoke(handler, args, fetcher, started + limit, limit)
            result.duration_ms = round((time.monotonic() - started) * 1000, 2)
            if self.broken:  # stopped mid-run (left open, it keeps the process from exiting), or replaced meanwhile
                self._close()
            result.exchanges = fetcher.take_exchanges()
            result.logs = [{**line, "message": fetcher.redact(line["message"])} for line in result.logs]
            return result

    def _invoke(self, handler: str, args: list[Any], fetcher: Fetcher, deadline: float, limit: float) -> Invocation:
        if self.load_error is not None:
            return Invocation(error=self.load_error)
        if self.broken:
            raise RuntimeError("this sandbox was closed: take a new one from sandbox_for()")
        result = Invocation()
        try:
            # Each trip to V8's thread runs code, then (microtasks run between the two) reads what it came to.
            start = f"__cdphub.start({orjson.dumps(handler).decode()}, {_js_string(args)})"
            step = orjson.loads(self._evals([start, "__cdphub.take()"], deadline))
            while True:
                if step.get("last"):
                    self._read_out(result, step)
                if step["missing"]:
                    result.missing = True
                    break
                if step["fatal"]:
                    result.error = FunctionError("Error", step["fatal"]["code"], step["fatal"]["message"])
                    break
                if step["done"] is not None:
                    done = step["done"]
                    if done["ok"]:
                        result.value = orjson.loads(done["value"])
                    else:
                        result.error = thrown(done["error"])
                        if self.imports and (result.error.name, result.error.message) == ("Error", "Not supported"):
                            result.error = FunctionError("Error", "forbidden", IMPORT_REFUSED, result.error.stack)
                    break
                if not step["calls"]:
                    result.error = FunctionError(
                        "Error",
                        "never_settled",
                        "the handler's promise never settled: it waits on something that never happens "
                        "(there are no timers here; await each fetch)",
                    )
                    break
                answers = []
                for call in step["calls"]:
                    answer = fetcher.fetch(call, deadline)
                    if answer.fatal:
                        result.error = FunctionError("Error", answer.code, answer.message)
                        self._finish(result, deadline)
                        return result
                    if answer.response is not None:
                        answers.append(f"__cdphub.answer({call['id']}, {_js_string(answer.response)});")
                    else:
                        answers.append(f"__cdphub.refuse({call['id']}, {_js_string(answer.message)});")
                step = orjson.loads(self._evals(["".join(answers), "__cdphub.take()"], deadline))
        except JSTimeoutException:
            self.broken = True  # V8 was stopped mid-way: the code's own state may be half-changed
            result.error = FunctionError("Timeout", "function_timeout", f"the function ran past its {limit:g} s limit")
        except JSOOMException:
            self.broken = True
            result.error = FunctionError(
                "Error", "memory_limit", f"the function used more than {self.memory // 1048576} MB of memory"
            )
        except OutOfTime:
            self.broken = True
            result.error = FunctionError("Timeout", "function_timeout", f"the function ran past its {limit:g} s limit")
        if result.error is not None and result.error.code in ("console_limit", "forbidden", "too_many_fetches"):
            self.broken = True  # it may have caught what it was told: start clean next time
        return result

    def _finish(self, result: Invocation, deadline: float) -> None:
        self._read_out(result, orjson.loads(self._eval("__cdphub.finish()", deadline)))

    @staticmethod
    def _read_out(result: Invocation, out: dict[str, Any]) -> None:
        result.logs = out["logs"]
        if out["dropped"]:
            result.logs.append({"level": "warn", "message": f"… {out['dropped']} more characters of console output"})
        result.emitted = out["emitted"]

    def _evals(self, codes: list[str], deadline: float) -> Any:
        """Run `codes` one after the other in one trip to mini-racer's event-loop thread (each eval apart, so the
        promise jobs one queues run before the next); the last one's value. A trip costs ~130 µs, the eval itself
        a few: this halves an invocation's cost. It uses mini-racer 0.14's own context object (pinned <0.15)."""
        ctx = self.ctx._ctx

        async def run() -> Any:
            value = None
            for code in codes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise OutOfTime
                try:
                    value = await asyncio.wait_for(ctx.eval_cancelable(code), timeout=remaining)
                except TimeoutError:
                    raise JSTimeoutException from None
            return value

        return asyncio.run_coroutine_threadsafe(run(), ctx.event_loop).result()

    def _eval(self, code: str, deadline: float) -> Any:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OutOfTime
        return self.ctx.eval(code, timeout_sec=remaining)


def new_racer() -> MiniRacer:
    """A MiniRacer with an event-loop thread of its own. Built on a thread with a running asyncio loop (an async
    view, a test driving Playwright's sync API), mini-racer would adopt that loop, and every later eval from it
    would fail or wait on itself: then it is built on a short-lived thread of its own."""
    if get_running_loop_or_none() is None:
        return MiniRacer()
    made: list[MiniRacer] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            made.append(MiniRacer())
        except BaseException as exc:
            errors.append(exc)

    builder = threading.Thread(target=build, name="mini-racer-context")
    builder.start()
    builder.join()
    if errors:
        raise errors[0]
    return made[0]


class OutOfTime(Exception):
    pass


def _js_string(value: Any) -> str:
    """A JavaScript string literal holding `value` as JSON (JSON is valid JavaScript; U+2028/2029 escaped)."""
    text = orjson.dumps(value).decode() if not isinstance(value, str) else value
    return orjson.dumps(text).decode().replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def thrown(error: dict[str, str]) -> FunctionError:
    name = error.get("name") or "Error"
    return FunctionError(name, ERROR_CODES.get(name, "function_error"), error.get("message", "")[:2000], error["stack"])


def js_error(exc: Exception, where: str) -> FunctionError:
    if isinstance(exc, JSTimeoutException):
        return FunctionError("Timeout", "function_timeout", f"the code's top level ran past {LOAD_SECONDS:g} s {where}")
    if isinstance(exc, JSOOMException):
        return FunctionError("Error", "memory_limit", f"the code ran out of memory {where}")
    problem = syntax_problem(str(exc))
    if problem:
        return FunctionError("SyntaxError", "syntax_error", problem)
    text = str(exc).strip().splitlines()
    return FunctionError("Error", "function_error", f"{text[0] if text else type(exc).__name__} {where}")


# Checking code on save ---------------------------------------------------------------------------------------

PARSE = re.compile(r"^(?:function\.js|<anonymous>):(\d+): (SyntaxError: .*)$", re.M)


def syntax_problem(message: str) -> str:
    """'line 3, column 14: SyntaxError: Unexpected token' from V8's parse message (its caret line gives the column)."""
    match = PARSE.search(message)
    if not match:
        return ""
    lines = message[match.end() :].split("\n")
    column = next(
        (
            len(line) - len(line.lstrip(" ")) + 1
            for line in lines[1:4]
            if line.strip() == "^" * len(line.strip()) and line.strip()
        ),
        None,
    )
    where = f"line {match.group(1)}" + (f", column {column}" if column else "")
    return f"{where}: {match.group(2)}"


def code_problems(code: str, kind: str) -> list[str]:
    """Why this code cannot be saved as a function of this kind: a syntax error with its line and column, an
    error on loading, no handler at all. Loaded in a throwaway context, as the worker will load it."""
    if not code.strip():
        return ["code: write at least one handler, e.g. async function onTrack(event, settings) { … }"]
    if re.search(r"^\s*(import\s+[\w{*]|export\s)", code, re.M):
        return [
            "code: import and export are not available: functions have no modules; use the globals "
            "(fetch, _, btoa, atob, URL …) and define the handlers as plain functions"
        ]
    sandbox = Sandbox(code)
    try:
        if sandbox.load_error is not None:
            error = sandbox.load_error
            return [f"code: {error.message}" if error.code == "syntax_error" else f"code: {error.text}"]
        names = HANDLERS.get(kind, HANDLERS["destination"])
        if not any(sandbox.has(name) for name in names):
            return [f"code: no handler: define at least one of {', '.join(names)}"]
        return []
    finally:
        sandbox.close()


# The process's warm contexts -----------------------------------------------------------------------------

_sandboxes: OrderedDict[tuple[str, str], Sandbox] = OrderedDict()
_sandboxes_lock = threading.Lock()


def fingerprint(code: str, settings: Any) -> str:
    return hashlib.sha256(code.encode() + b"\0" + orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)).hexdigest()


def sandbox_for(owner: str, code: str, settings: Any) -> Sandbox:
    """The warm context of `owner` ("destination:12", "insert:12", "source:3", "test:…") for this code and
    these settings: a new one when either changed or the last invocation left it broken. Two owners never
    share a context, so one destination's module state is never another's."""
    key = fingerprint(code, settings)
    with _sandboxes_lock:
        entry = _sandboxes.get((owner, key))
        if entry is not None and not entry.broken:
            _sandboxes.move_to_end((owner, key))
            return entry
        stale = [k for k in _sandboxes if k[0] == owner]
        for k in stale:
            _sandboxes.pop(k).close()
        while len(_sandboxes) >= MAX_CONTEXTS:
            _sandboxes.popitem(last=False)[1].close()
    sandbox = Sandbox(code)
    with _sandboxes_lock:
        _sandboxes[(owner, key)] = sandbox
    return sandbox


def drop_all() -> None:
    """Close every warm context (tests; and a process that is about to fork)."""
    with _sandboxes_lock:
        while _sandboxes:
            _sandboxes.popitem()[1].close()


atexit.register(drop_all)


def warm_count() -> int:
    return len(_sandboxes)


__all__ = [
    "HANDLER_OF_TYPE",
    "FunctionError",
    "Invocation",
    "JSEvalException",
    "Sandbox",
    "code_problems",
    "drop_all",
    "sandbox_for",
]
