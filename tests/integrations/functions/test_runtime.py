"""The functions runtime: Segment's globals in V8 (fetch made by the host, Headers, URL, btoa/atob, console, lodash,
cache), warm contexts per owner, and how each way a handler ends comes back to Python."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import requests
import responses

from integrations.functions.fetch import Fetcher
from integrations.functions.runtime import Invocation, Sandbox, code_problems, sandbox_for
from integrations.vendors.http import REDACTED, USER_AGENT

API = "https://api.example.com"
API_KEY = "sk_live_7d2f9a41c3"
EVENT = {"type": "track", "event": "Order Completed", "userId": "user-1", "properties": {"revenue": 49}}


def invoke(
    code: str,
    handler: str = "onTrack",
    args: list[Any] | None = None,
    secrets: list[str] | None = None,
    *,
    send: bool = True,
) -> Invocation:
    """Run `handler` of `code` once in a fresh sandbox."""
    sandbox = Sandbox(code)
    try:
        return sandbox.invoke(handler, args if args is not None else [EVENT, {}], Fetcher(secrets or [], send=send))
    finally:
        sandbox.close()


def returned(body: str, **kwargs: Any) -> Any:
    """The value of an async onTrack whose body is `body`; fails on an error."""
    run = invoke(f"async function onTrack(event, settings) {{\n{body}\n}}", **kwargs)
    assert run.error is None, run.error
    return run.value


# fetch ---------------------------------------------------------------------------------------------------


def test_fetch_gets_with_headers_and_reads_status_headers_and_json(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{API}/users/42", json={"name": "Ada"}, headers={"X-Rate-Remaining": "9"})

    value = returned(
        f"""const headers = {{Accept: 'application/json', 'X-Team': 'growth'}};
        const response = await fetch('{API}/users/42', {{headers}});
        const body = await response.json();
        return [response.status, response.ok, response.headers.get('x-rate-remaining'), body.name];"""
    )

    assert value == [200, True, "9", "Ada"]
    [call] = mocked.calls
    assert call.request.method == "GET"
    assert call.request.url == f"{API}/users/42"
    assert call.request.headers["Accept"] == "application/json"
    assert call.request.headers["X-Team"] == "growth"
    assert call.request.headers["User-Agent"] == USER_AGENT
    assert call.request.body is None


def test_fetch_posts_a_string_body_with_a_headers_object(mocked: responses.RequestsMock) -> None:
    mocked.post(f"{API}/events", body="created", status=201)

    value = returned(
        f"""const headers = new Headers({{'Content-Type': 'application/json'}});
        headers.append('X-Trace', 'a');
        headers.append('x-trace', 'b');
        const response = await fetch('{API}/events', {{method: 'post', headers, body: JSON.stringify(event)}});
        return [response.status, response.ok, await response.text()];"""
    )

    assert value == [201, True, "created"]
    request = mocked.calls[0].request
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Trace"] == "a, b"
    assert json.loads(request.body) == EVENT


def test_fetch_sends_url_search_params_as_a_form(mocked: responses.RequestsMock) -> None:
    mocked.post(f"{API}/oauth/token", json={"ok": True})

    returned(
        f"""const form = new URLSearchParams({{grant_type: 'client_credentials', scope: 'read write'}});
        await fetch('{API}/oauth/token', {{method: 'POST', body: form}});"""
    )

    request = mocked.calls[0].request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded;charset=UTF-8"
    assert request.body == b"grant_type=client_credentials&scope=read+write"


def test_fetch_takes_a_request_with_its_method_headers_and_body(mocked: responses.RequestsMock) -> None:
    mocked.put(f"{API}/contacts/42", json={"ok": True})

    returned(
        f"""const request = new Request('{API}/contacts/42', {{method: 'PUT', headers: {{'X-Team': 'growth'}},
          body: JSON.stringify({{plan: 'pro'}})}});
        await fetch(request);"""
    )

    call = mocked.calls[0].request
    assert (call.method, call.headers["X-Team"], call.body) == ("PUT", "growth", b'{"plan":"pro"}')


def test_a_4xx_answer_is_not_ok_and_its_body_reads_as_text(mocked: responses.RequestsMock) -> None:
    mocked.post(f"{API}/events", json={"message": "email is required"}, status=400)

    value = returned(
        f"""const response = await fetch('{API}/events', {{method: 'POST', body: '{{}}'}});
        return [response.status, response.ok, response.statusText, await response.text()];"""
    )

    assert value == [400, False, "Bad Request", '{"message": "email is required"}']


def test_response_json_on_a_body_that_is_not_json_rejects_with_the_url(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{API}/page", body="<html>")

    value = returned(
        f"""const response = await fetch('{API}/page');
        try {{ await response.json(); }} catch (error) {{ return [error.name, error.message]; }}"""
    )

    assert value[0] == "SyntaxError"
    assert value[1].startswith(f"invalid json response body at {API}/page reason: ")


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (requests.ConnectTimeout("connect timed out"), "No answer within"),
        (requests.ConnectionError("[Errno 111] Connection refused"), "Connection failed: [Errno 111]"),
    ],
)
def test_a_fetch_that_gets_no_answer_rejects_as_node_fetchs_fetch_error(
    mocked: responses.RequestsMock, failure: Exception, reason: str
) -> None:
    mocked.get(f"{API}/slow", body=failure)

    value = returned(
        f"""try {{ await fetch('{API}/slow'); }} catch (error) {{ return [error.name, error.type, error.message]; }}"""
    )

    assert value[:2] == ["FetchError", "system"]
    assert value[2].startswith(f"request to {API}/slow failed, reason: {reason}")


def test_a_get_with_a_body_is_refused_before_anything_is_sent(mocked: responses.RequestsMock) -> None:
    value = returned(
        f"""try {{ await fetch('{API}/x', {{body: 'a'}}); }} catch (error) {{ return [error.name, error.message]; }}"""
    )

    assert value == ["TypeError", "Request with GET/HEAD method cannot have body"]
    assert len(mocked.calls) == 0


def test_each_fetch_is_an_exchange_with_the_settings_secrets_redacted(mocked: responses.RequestsMock) -> None:
    mocked.post(f"{API}/collect?key={API_KEY}", json={"received": API_KEY})

    run = invoke(
        f"""async function onTrack(event, settings) {{
          await fetch('{API}/collect?key=' + settings.apiKey, {{
            method: 'POST',
            headers: {{'Content-Type': 'application/json', 'X-Signed-By': settings.apiKey}},
            body: JSON.stringify({{note: 'sent with ' + settings.apiKey}}),
          }});
        }}""",
        args=[EVENT, {"apiKey": API_KEY}],
        secrets=[API_KEY],
    )

    assert run.error is None
    assert mocked.calls[0].request.headers["X-Signed-By"] == API_KEY  # sent as written
    [exchange] = run.exchanges
    assert exchange["request"]["url"] == f"{API}/collect?key={REDACTED}"
    assert exchange["request"]["headers"]["x-signed-by"] == REDACTED  # fetch's Headers lower-case the names
    assert json.loads(exchange["request"]["body"]) == {"note": f"sent with {REDACTED}"}
    assert exchange["response"]["status"] == 200
    assert API_KEY not in json.dumps(run.exchanges)


def test_a_token_the_api_issues_is_redacted_from_then_on(mocked: responses.RequestsMock) -> None:
    token = "eyJissued.token.4f8c2a"
    mocked.post(f"{API}/oauth/token", json={"access_token": token, "expires_in": 3600})
    mocked.post(f"{API}/events", json={"ok": True})

    run = invoke(
        f"""async function onTrack(event) {{
          const {{access_token}} = await (await fetch('{API}/oauth/token', {{method: 'POST'}})).json();
          console.log('got', access_token);
          const body = JSON.stringify({{token: access_token, q: access_token}});
          await fetch('{API}/events', {{method: 'POST', body}});
        }}"""
    )

    assert run.error is None
    assert mocked.calls[1].request.body == json.dumps({"token": token, "q": token}, separators=(",", ":")).encode()
    assert run.logs == [{"level": "log", "message": f"got {REDACTED}"}]
    assert token not in json.dumps(run.exchanges)


def test_with_send_off_fetch_is_recorded_and_answered_with_an_empty_200(mocked: responses.RequestsMock) -> None:
    run = invoke(
        f"""async function onTrack(event) {{
          const response = await fetch('{API}/events', {{method: 'POST', body: 'hello'}});
          return [response.status, await response.json()];
        }}""",
        send=False,
    )

    assert run.value == [200, {}]
    assert len(mocked.calls) == 0
    [exchange] = run.exchanges
    assert exchange["request"]["method"] == "POST"
    assert exchange["request"]["body"] == "hello"
    assert exchange["note"].startswith("not sent")


# The other globals -------------------------------------------------------------------------------------


def test_headers_are_case_insensitive_and_iterable() -> None:
    value = returned(
        """const headers = new Headers([['Content-Type', 'text/plain']]);
        headers.set('X-One', '1');
        headers.delete('x-one');
        return [headers.get('content-type'), headers.has('CONTENT-TYPE'), headers.get('x-one'), [...headers]];"""
    )

    assert value == ["text/plain", True, None, [["content-type", "text/plain"]]]


def test_url_and_url_search_params_parse_and_build() -> None:
    value = returned(
        """const url = new URL('/v2/contacts?page=2', 'https://api.example.com');
        url.searchParams.append('email', 'ada+1@example.com');
        const params = new URLSearchParams('a=1&b=two%20words');
        return [url.hostname, url.pathname, url.searchParams.get('page'), url.href, params.get('b')];"""
    )

    assert value == [
        "api.example.com",
        "/v2/contacts",
        "2",
        "https://api.example.com/v2/contacts?page=2&email=ada%2B1%40example.com",
        "two words",
    ]


def test_btoa_and_atob_round_trip_latin1_text() -> None:
    value = returned("""return [btoa('client:secret'), atob(btoa('café ÿ')), atob('aGk=')];""")

    assert value == ["Y2xpZW50OnNlY3JldA==", "café ÿ", "hi"]


def test_btoa_refuses_characters_outside_latin1_as_browsers_do() -> None:
    run = invoke("async function onTrack() { return btoa('€uro'); }")

    assert run.error is not None
    assert run.error.message == "btoa: the string has characters outside Latin-1 (InvalidCharacterError)"


def test_console_lines_are_captured_with_their_levels() -> None:
    run = invoke(
        """async function onTrack(event) {
          console.log('event', event.event, {revenue: event.properties.revenue});
          console.info('info');
          console.warn('careful');
          console.error(new TypeError('shown with its stack'));
          console.debug(undefined, null, 1n);
        }"""
    )

    assert [(line["level"], line["message"].splitlines()[0]) for line in run.logs] == [
        ("log", 'event Order Completed {"revenue":49}'),
        ("info", "info"),
        ("warn", "careful"),
        ("error", "TypeError: shown with its stack"),
        ("debug", "undefined null 1n"),
    ]


def test_secrets_are_redacted_from_console_lines() -> None:
    run = invoke(
        "async function onTrack(event, settings) { console.log('using', settings.apiKey, JSON.stringify(settings)); }",
        args=[EVENT, {"apiKey": API_KEY}],
        secrets=[API_KEY],
    )

    assert run.logs == [{"level": "log", "message": f'using {REDACTED} {{"apiKey":"{REDACTED}"}}'}]


def test_console_output_past_16_kb_is_cut_with_a_note_of_what_was_dropped() -> None:
    run = invoke("async function onTrack() { for (let i = 0; i < 40; i++) console.log('x'.repeat(1000)); }")

    assert run.error is None
    kept = sum(len(line["message"]) for line in run.logs[:-1])
    assert kept == 16384
    assert run.logs[-1] == {"level": "warn", "message": f"… {40_000 - 16384} more characters of console output"}


def test_lodash_is_there_as_underscore() -> None:
    value = returned(
        """return [_.get(event, 'properties.revenue'), _.pick({a: 1, b: 2}, ['a']), _.chunk([1, 2, 3], 2),
        _.VERSION.split('.')[0]];"""
    )

    assert value == [49, {"a": 1}, [[1, 2], [3]], "4"]


def test_cache_load_calls_its_loader_once_within_the_ttl_and_again_after_delete() -> None:
    sandbox = sandbox_for(
        "destination:cache",
        """let loads = 0;
        async function onTrack() {
          const value = await cache.load('token', 60000, async () => 'token-' + (++loads));
          if (loads === 2) cache.delete('token');
          return value;
        }
        async function onIdentify() { cache.delete('token'); }""",
        {},
    )
    values = []
    for handler in ("onTrack", "onTrack", "onIdentify", "onTrack", "onTrack"):
        values.append(sandbox.invoke(handler, [EVENT, {}], Fetcher([])).value)

    assert values == ["token-1", "token-1", None, "token-2", "token-3"]


def test_a_handlers_return_value_comes_back_as_json() -> None:
    assert returned("return {event: event.event, n: 1.5, list: [true, null], nested: {u: undefined}};") == {
        "event": "Order Completed",
        "n": 1.5,
        "list": [True, None],
        "nested": {},
    }


# Warm contexts -----------------------------------------------------------------------------------------

COUNTER = """let calls = 0;
async function onTrack(event, settings) {
  calls += 1;
  return calls;
}"""


def count(owner: str, code: str = COUNTER, settings: dict[str, Any] | None = None) -> Any:
    run = sandbox_for(owner, code, settings or {}).invoke("onTrack", [EVENT, settings or {}], Fetcher([]))
    assert run.error is None, run.error
    return run.value


def test_module_level_state_persists_between_invocations_of_a_warm_context() -> None:
    assert [count("destination:1") for _ in range(3)] == [1, 2, 3]


def test_a_code_change_gives_the_owner_a_fresh_context() -> None:
    count("destination:1")
    count("destination:1")

    assert count("destination:1", COUNTER + "\n// v2") == 1


def test_a_settings_change_gives_the_owner_a_fresh_context() -> None:
    count("destination:1", settings={"region": "eu"})
    count("destination:1", settings={"region": "eu"})

    assert count("destination:1", settings={"region": "us"}) == 1
    assert count("destination:1", settings={"region": "eu"}) == 1  # the old one was dropped, not kept aside


def test_two_owners_with_the_same_code_never_share_state() -> None:
    count("destination:1")
    count("destination:1")

    assert count("destination:2") == 1
    assert count("insert:1") == 1
    assert count("destination:1") == 3


def test_replacing_a_context_while_another_thread_runs_it_lets_that_run_finish() -> None:
    # A webhook still running the old code in one thread while a request in another loads the new version.
    old = "async function onTrack() { const start = Date.now(); while (Date.now() - start < 300) {} return 'old'; }"
    running = sandbox_for("source:1", old, {})
    finished: list[Any] = []
    thread = threading.Thread(
        target=lambda: finished.append(running.invoke("onTrack", [EVENT, {}], Fetcher([])).value), daemon=True
    )
    thread.start()
    time.sleep(0.1)

    new = sandbox_for("source:1", "async function onTrack() { return 'new'; }", {})
    thread.join(5)

    assert not thread.is_alive(), "the run in the old context never came back"
    assert finished == ["old"]
    assert running.broken  # closed once its run was over
    assert new.invoke("onTrack", [EVENT, {}], Fetcher([])).value == "new"


# How a handler ends ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_class", "code"),
    [
        ("RetryError", "function_retry"),
        ("EventNotSupported", "event_not_supported"),
        ("InvalidEventPayload", "message_rejected"),
        ("ValidationError", "message_rejected"),
        ("DropEvent", "dropped"),
        ("Error", "function_error"),
        ("TypeError", "function_error"),
    ],
)
def test_each_error_class_keeps_its_name_and_gets_its_code(error_class: str, code: str) -> None:
    run = invoke(f"async function onTrack() {{ throw new {error_class}('said so'); }}")

    assert run.error is not None
    assert (run.error.name, run.error.code, run.error.message) == (error_class, code, "said so")


def test_segments_error_classes_are_errors_the_code_can_check_with_instanceof() -> None:
    value = returned(
        "const e = new RetryError('x'); return [e instanceof Error, e instanceof RetryError, e.name, RetryError.name];"
    )

    assert value == [True, True, "RetryError", "RetryError"]


def test_a_plain_throw_keeps_its_message_and_the_line_in_the_functions_code() -> None:
    run = invoke(
        """async function onTrack(event) {
  const email = event.traits.email;
  return email;
}"""
    )

    assert run.error is not None
    assert (run.error.name, run.error.code) == ("TypeError", "function_error")
    assert run.error.message == "Cannot read properties of undefined (reading 'email')"
    assert run.error.stack == "at onTrack (function.js:2:30)"
    assert run.error.text == (
        "TypeError: Cannot read properties of undefined (reading 'email') (at onTrack (function.js:2:30))"
    )


def test_a_throw_in_a_helper_points_at_the_helpers_line() -> None:
    run = invoke(
        """function check(event) {
  if (!event.userId) throw new ValidationError('userId is required');
}
async function onTrack(event) { check(event); }""",
        args=[{"type": "track"}, {}],
    )

    assert run.error is not None
    assert run.error.stack == "at check (function.js:2:28)"


def test_a_thrown_string_is_an_error_with_that_message() -> None:
    run = invoke("async function onTrack() { throw 'nope'; }")

    assert run.error is not None
    assert (run.error.name, run.error.code, run.error.message) == ("Error", "function_error", "nope")


def test_a_missing_handler_is_reported_as_missing_not_as_an_error() -> None:
    run = invoke("async function onIdentify() {}", "onTrack")

    assert run.missing is True
    assert run.error is None


def test_an_error_at_load_is_every_invocations_error() -> None:
    sandbox = Sandbox("const region = settings.region;\nasync function onTrack() {}")
    try:
        runs = [sandbox.invoke("onTrack", [EVENT, {}], Fetcher([])) for _ in range(2)]
    finally:
        sandbox.close()

    for run in runs:
        assert run.error is not None
        assert run.error.code == "function_error"
        assert run.error.message == "function.js:1: ReferenceError: settings is not defined while loading the code"


# Checking code on save ---------------------------------------------------------------------------------


def test_a_syntax_error_is_refused_with_its_line_and_column() -> None:
    assert code_problems("async function onTrack(event) {\n  return event.a +;\n}", "destination") == [
        "code: line 2, column 19: SyntaxError: Unexpected token ';'"
    ]


@pytest.mark.parametrize(
    "code",
    [
        "import fetch from 'node-fetch';\nasync function onTrack() {}",
        "import { get } from 'lodash'\nasync function onTrack() {}",
        "export async function onTrack() {}",
    ],
)
def test_import_and_export_are_refused_on_save(code: str) -> None:
    [problem] = code_problems(code, "destination")

    assert problem.startswith("code: import and export are not available")


def test_code_without_a_handler_of_its_kind_is_refused() -> None:
    assert code_problems("async function onTrack() {}", "source") == [
        "code: no handler: define at least one of onRequest"
    ]
    assert code_problems("const helper = () => 1;", "destination") == [
        "code: no handler: define at least one of onTrack, onIdentify, onPage, onScreen, onGroup, onAlias, onDelete, "
        "onBatch"
    ]
    assert code_problems("   ", "insert") == [
        "code: write at least one handler, e.g. async function onTrack(event, settings) { … }"
    ]


def test_good_code_has_no_problems() -> None:
    assert code_problems("async function onRequest(request, settings) {}", "source") == []


def test_handlers_declared_as_constants_are_found_like_function_declarations() -> None:
    code = "const onTrack = async (event) => ({ seen: event.event });\nlet onPage = async () => 'page';\n"
    assert code_problems(code, "destination") == []
    sandbox = Sandbox(code)
    try:
        assert sandbox.invoke("onTrack", [{"event": "Signed Up"}, {}], Fetcher([])).value == {"seen": "Signed Up"}
        assert sandbox.invoke("onPage", [{}, {}], Fetcher([])).value == "page"
        assert sandbox.invoke("onIdentify", [{}, {}], Fetcher([])).missing
    finally:
        sandbox.close()


def test_an_insert_function_needs_a_handler_per_event_type_not_only_on_batch() -> None:
    [problem] = code_problems("async function onBatch(events) { return events; }", "insert")
    assert "onTrack" in problem


def test_a_lone_surrogate_made_by_a_function_comes_back_as_u_fffd() -> None:
    """Found by the webhook fuzz test: JSON.stringify writes half a surrogate pair as an escape orjson refuses,
    which was a 500 for any webhook whose JSON held "\\ud800" (a source function parsing it), or a function cutting
    an emoji in half. A pair, and the text \\ud800 after an escaped backslash, come back as they were."""
    value = returned(r"""
      const lone = JSON.parse('"a\\ud800b"');
      console.log("logged", lone);
      return {lone: lone, cut: "🎉".slice(0, 1), [lone]: 1, pair: "🎉", text: "C:\\ud800"};
    """)

    assert value == {"lone": "a\ufffdb", "cut": "\ufffd", "a\ufffdb": 1, "pair": "🎉", "text": "C:\\ud800"}
