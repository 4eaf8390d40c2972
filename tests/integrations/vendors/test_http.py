"""The vendors' HTTP client: the private-address guard, Retry-After, redaction and truncation, no redirects."""

from __future__ import annotations

import email.utils
import json
import socket
import time
from typing import Any

import pytest
import requests
import responses

from integrations.vendors.http import (
    BODY_LIMIT,
    REDACTED,
    HttpClient,
    check_url,
    describe_response,
    retry_after_seconds,
    sandboxed,
)
from integrations.vendors.results import DeliveryError
from integrations.vendors.webhook import Webhook

SECRET = "sk_live_9f8e7d6c5b"


@pytest.fixture
def private_urls_refused(settings: Any) -> None:
    settings.ALLOW_PRIVATE_URLS = False


def resolve_to(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    """Make every host name resolve to these addresses, without DNS."""

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        family = {True: socket.AF_INET6, False: socket.AF_INET}
        return [(family[":" in a], socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", fake)


# The private-address guard -------------------------------------------------------------------------------

PRIVATE_URLS = [
    ("http://127.0.0.1:8000/hook", "127.0.0.1"),
    ("https://10.0.0.1/hook", "10.0.0.1"),
    ("http://192.168.1.20/hook", "192.168.1.20"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("http://[::1]:8080/hook", "::1"),
    ("http://0.0.0.0/hook", "0.0.0.0"),
]


@pytest.mark.usefixtures("private_urls_refused")
@pytest.mark.parametrize(("url", "address"), PRIVATE_URLS)
def test_the_guard_refuses_loopback_private_and_link_local_addresses(url: str, address: str) -> None:
    with pytest.raises(DeliveryError) as caught:
        check_url(url)

    assert caught.value.code == "private_address"
    assert f"({address})" in caught.value.message
    assert not caught.value.retryable, "a private address does not become public by waiting"
    assert "CDPHUB_ALLOW_PRIVATE_URLS" in caught.value.hint


@pytest.mark.usefixtures("private_urls_refused")
def test_the_guard_refuses_a_host_name_that_resolves_to_loopback() -> None:
    with pytest.raises(DeliveryError, match=r"localhost resolves to a private address") as caught:
        check_url("http://localhost:8000/hook")

    assert caught.value.code == "private_address"


@pytest.mark.usefixtures("private_urls_refused")
def test_the_guard_refuses_a_public_name_when_any_of_its_addresses_is_private(monkeypatch: pytest.MonkeyPatch) -> None:
    resolve_to(monkeypatch, "93.184.215.14", "10.1.2.3")

    with pytest.raises(DeliveryError, match=r"hooks\.example\.com resolves to a private address \(10\.1\.2\.3\)"):
        check_url("https://hooks.example.com/cdp")


@pytest.mark.usefixtures("private_urls_refused")
def test_the_guard_lets_public_addresses_through(monkeypatch: pytest.MonkeyPatch) -> None:
    check_url("https://93.184.215.14/hook")
    check_url("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hook")
    resolve_to(monkeypatch, "93.184.215.14")
    check_url("https://hooks.example.com/cdp")


@pytest.mark.usefixtures("private_urls_refused")
def test_an_unresolvable_host_is_a_retryable_dns_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)

    with pytest.raises(DeliveryError) as caught:
        check_url("https://nowhere.example.invalid/hook")

    assert caught.value.code == "dns_error"
    assert caught.value.retryable
    assert "nowhere.example.invalid" in caught.value.message


@pytest.mark.usefixtures("private_urls_refused")
def test_a_resolver_outage_is_told_apart_from_a_name_that_does_not_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", fail)

    with pytest.raises(DeliveryError) as caught:
        check_url("https://mc123.auth.marketingcloudapis.com/v2/token")

    assert (caught.value.code, caught.value.retryable) == ("dns_unavailable", True)


@pytest.mark.parametrize("url", [url for url, _ in PRIVATE_URLS] + ["http://localhost:8000/hook"])
def test_private_addresses_are_allowed_when_the_setting_is_on(url: str, settings: Any) -> None:
    settings.ALLOW_PRIVATE_URLS = True

    check_url(url)


@pytest.mark.parametrize("allowed", [True, False])
@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "hooks.example.com/cdp",
        "javascript:alert(1)",
        "https:///no-host",
        "",
    ],
)
def test_urls_that_are_not_http_are_refused_whatever_the_setting(url: str, allowed: bool, settings: Any) -> None:
    settings.ALLOW_PRIVATE_URLS = allowed

    with pytest.raises(DeliveryError) as caught:
        check_url(url)

    assert caught.value.code == "invalid_url"
    assert "is not an http(s) URL" in caught.value.message


@pytest.mark.usefixtures("private_urls_refused")
def test_a_delivery_to_a_private_address_sends_nothing_and_fails(mocked: responses.RequestsMock) -> None:
    [result] = Webhook({"url": "http://169.254.169.254/latest/meta-data/"}, {}).deliver(
        [{"type": "track", "event": "E", "userId": "u", "messageId": "m1"}]
    )

    assert result.outcome == "failed"
    assert result.error_code == "private_address"
    assert result.exchanges == []
    assert len(mocked.calls) == 0


# Retry-After -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-5", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("Wed, 32 Foo 2015 99:99:99 GMT", None),
    ],
)
def test_retry_after_is_read_as_seconds(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


def test_retry_after_is_read_as_an_http_date() -> None:
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)

    assert 57 <= retry_after_seconds(in_a_minute) <= 61


def test_a_retry_after_date_in_the_past_means_now() -> None:
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


# The recorded exchange -------------------------------------------------------------------------------------


def client(**kwargs: Any) -> HttpClient:
    return HttpClient(5.0, [SECRET, "abc", ""], {"X-Api-Key"}, **kwargs)


def test_secret_headers_are_redacted_in_both_directions(mocked: responses.RequestsMock) -> None:
    mocked.post("https://api.example.com/x", headers={"Set-Cookie": "session=s3ss10n", "X-Plain": "visible"})
    http = client()

    http.request(
        "POST",
        "https://api.example.com/x",
        headers={
            "Authorization": "Bearer tok_abcdef",
            "Cookie": "sid=c00k1e",
            "x-api-key": "k3y-value",
            "Proxy-Authorization": "Basic cHJveHk=",
            "X-Team": "growth",
        },
    )

    [exchange] = http.take_exchanges()
    sent = exchange["request"]["headers"]
    assert sent["Authorization"] == sent["Cookie"] == sent["x-api-key"] == sent["Proxy-Authorization"] == REDACTED
    assert sent["X-Team"] == "growth"
    received = exchange["response"]["headers"]
    assert received["Set-Cookie"] == REDACTED
    assert received["X-Plain"] == "visible"
    log = json.dumps(exchange)
    for value in ("tok_abcdef", "c00k1e", "k3y-value", "cHJveHk=", "s3ss10n"):
        assert value not in log
    assert http.exchanges == [], "take_exchanges empties the log"


def test_credential_values_are_redacted_wherever_they_appear(mocked: responses.RequestsMock) -> None:
    mocked.post(
        f"https://api.example.com/token?key={SECRET}",
        body=f"unknown key {SECRET}",
        status=403,
        headers={"X-Echo": f"k={SECRET}"},
    )
    http = client()

    http.request(
        "POST", f"https://api.example.com/token?key={SECRET}", data=f"key={SECRET}&grant=x", headers={"X-Sig": SECRET}
    )

    [exchange] = http.take_exchanges()
    assert SECRET not in json.dumps(exchange)
    assert exchange["request"]["url"] == f"https://api.example.com/token?key={REDACTED}"
    assert exchange["request"]["body"] == f"key={REDACTED}&grant=x"
    assert exchange["request"]["headers"]["X-Sig"] == REDACTED
    assert exchange["response"]["body"] == f"unknown key {REDACTED}"
    assert exchange["response"]["headers"]["X-Echo"] == f"k={REDACTED}"


def test_values_too_short_to_be_secrets_are_not_redacted_everywhere(mocked: responses.RequestsMock) -> None:
    mocked.post("https://api.example.com/abc", body="abc")
    http = client()

    http.request("POST", "https://api.example.com/abc")

    assert http.take_exchanges()[0]["response"]["body"] == "abc"


def test_secret_looking_json_keys_are_redacted_at_any_depth(mocked: responses.RequestsMock) -> None:
    mocked.post(
        "https://auth.example.com/v2/token",
        json={
            "access_token": "eyJhbGciOi.xyz",
            "refresh_token": "rt_123",
            "expires_in": 1079,
            "scope": "email_read",
            "nested": [{"client_secret": "cs_456", "API-Key": "ak_789", "name": "kept"}],
        },
    )
    http = client()

    http.request(
        "POST",
        "https://auth.example.com/v2/token",
        json={
            "grant_type": "client_credentials",
            "client_id": "my-client",
            "client_secret": "cs_456",
            "password": "hunter22",
            "signature": "sig_000",
            "writeKey": "wk_111",
        },
    )

    [exchange] = http.take_exchanges()
    assert json.loads(exchange["request"]["body"]) == {
        "grant_type": "client_credentials",
        "client_id": "my-client",
        "client_secret": REDACTED,
        "password": REDACTED,
        "signature": REDACTED,
        "writeKey": REDACTED,
    }
    assert json.loads(exchange["response"]["body"]) == {
        "access_token": REDACTED,
        "refresh_token": REDACTED,
        "expires_in": 1079,
        "scope": "email_read",
        "nested": [{"client_secret": REDACTED, "API-Key": REDACTED, "name": "kept"}],
    }


def test_long_bodies_are_truncated_with_a_note_of_what_was_cut(mocked: responses.RequestsMock) -> None:
    mocked.post("https://api.example.com/x", body="r" * 10_000)
    http = client()

    http.request("POST", "https://api.example.com/x", data="q" * (BODY_LIMIT + 1))

    [exchange] = http.take_exchanges()
    assert exchange["request"]["body"] == "q" * BODY_LIMIT + "… (1 more characters)"
    assert exchange["response"]["body"] == "r" * BODY_LIMIT + f"… ({10_000 - BODY_LIMIT} more characters)"


def test_a_body_at_the_limit_is_kept_whole_and_an_empty_body_is_empty(mocked: responses.RequestsMock) -> None:
    mocked.get("https://api.example.com/x", body="")
    http = client()

    http.request("GET", "https://api.example.com/x", data="z" * BODY_LIMIT)
    http.request("GET", "https://api.example.com/x")

    first, second = http.take_exchanges()
    assert first["request"]["body"] == "z" * BODY_LIMIT
    assert second["request"]["body"] == ""
    assert second["response"]["body"] == ""


def test_a_binary_body_is_recorded_without_crashing(mocked: responses.RequestsMock) -> None:
    mocked.post("https://api.example.com/x", body=b"\xff\xfe\x00binary")
    http = client()

    http.request("POST", "https://api.example.com/x")

    assert "binary" in http.take_exchanges()[0]["response"]["body"]


def test_a_connection_error_is_recorded_without_the_secret(mocked: responses.RequestsMock) -> None:
    mocked.post("https://api.example.com/x", body=requests.ConnectionError(f"refused for {SECRET}"))
    http = client()

    with pytest.raises(DeliveryError) as caught:
        http.request("POST", "https://api.example.com/x")

    [exchange] = http.take_exchanges()
    assert caught.value.code == "connection_error"
    assert caught.value.retryable
    assert SECRET not in caught.value.message
    assert SECRET not in json.dumps(exchange)
    assert exchange["error"].startswith("Connection failed: ")
    assert "response" not in exchange


def test_a_timeout_is_recorded_and_retryable(mocked: responses.RequestsMock) -> None:
    mocked.post("https://api.example.com/x", body=requests.ReadTimeout("read timed out"))
    http = client()

    with pytest.raises(DeliveryError) as caught:
        http.request("POST", "https://api.example.com/x")

    assert (caught.value.code, caught.value.retryable) == ("timeout", True)
    assert caught.value.message == "No answer within 5 s"
    assert http.take_exchanges()[0]["error"] == "No answer within 5 s"


# Redirects and error messages ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed_and_fail_with_a_message(status: int) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.post(
            "https://hooks.example.com/old", status=status, headers={"Location": "https://hooks.example.com/new"}
        )
        mocked.post("https://hooks.example.com/new")

        [result] = Webhook({"url": "https://hooks.example.com/old"}, {}).deliver(
            [{"type": "track", "event": "E", "userId": "u", "messageId": "m1"}]
        )

        assert [call.request.url for call in mocked.calls] == ["https://hooks.example.com/old"]
    assert result.outcome == "failed"
    assert result.status_code == status
    assert "redirects are not followed: use the final URL" in result.error_message


def answer(status: int, body: str | bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode() if isinstance(body, str) else body
    return response


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, '{"message": "bad field"}', "HTTP 400: bad field"),
        (
            401,
            '{"error": "invalid_client", "error_description": "Client authentication failed"}',
            "HTTP 401: Client authentication failed",
        ),
        (401, '{"error": "invalid_client"}', "HTTP 401: invalid_client"),
        (422, '{"errors": [{"field": "email"}]}', 'HTTP 422: [{"field":"email"}]'),
        (404, '{"detail": "Not found."}', "HTTP 404: Not found."),
        (500, "<html>\n  <b>Internal   error</b>\n</html>", "HTTP 500: <html> <b>Internal error</b> </html>"),
        (502, "", "HTTP 502"),
        (400, '{"message": "", "other": 1}', 'HTTP 400: {"message": "", "other": 1}'),
    ],
)
def test_describe_response_gives_the_receivers_own_words(status: int, body: str, message: str) -> None:
    assert describe_response(answer(status, body)) == message


def test_describe_response_keeps_a_long_body_short() -> None:
    assert len(describe_response(answer(500, "e" * 5000))) == len("HTTP 500: ") + 300


def test_the_proxy_environment_is_read_once_per_host_and_still_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "hooks.internal")
    reads: list[str] = []
    original = requests.utils.get_environ_proxies

    def counting(url: str, *args: Any, **kwargs: Any) -> dict[str, str]:
        reads.append(url)
        return original(url, *args, **kwargs)

    monkeypatch.setattr(requests.utils, "get_environ_proxies", counting)
    client = HttpClient(5, [])

    assert client.proxies_for("https://api.example.com/v1/a")["https"] == "http://proxy.internal:3128"
    assert client.proxies_for("https://api.example.com/v1/b")["https"] == "http://proxy.internal:3128"
    assert "https" not in client.proxies_for("https://hooks.internal/x")
    assert reads == ["https://api.example.com/v1/a", "https://hooks.internal/x"]
    assert client.session.trust_env is False  # requests no longer reads the environment on every call


# The sandbox in place of the real vendor hosts (CDPHUB_SANDBOX_URL) ----------------------------------------

SANDBOX = "http://127.0.0.1:9100"


@pytest.mark.parametrize(
    ("url", "routed"),
    [
        ("https://mc-abc123xyz.auth.marketingcloudapis.com/v2/token", f"{SANDBOX}/sfmc/auth/v2/token"),
        (
            "https://mc-abc123xyz.rest.marketingcloudapis.com/interaction/v1/events",
            f"{SANDBOX}/sfmc/rest/interaction/v1/events",
        ),
        (
            "https://284-RPR-133.mktorest.com/identity/oauth/token?grant_type=x",
            f"{SANDBOX}/marketo/identity/oauth/token?grant_type=x",
        ),
        ("https://acme.zendesk.com/api/v2/tickets.json", f"{SANDBOX}/zendesk/api/v2/tickets.json"),
        ("https://rest.iad-01.braze.com/users/track", f"{SANDBOX}/braze/users/track"),
        ("https://rest.fra-01.braze.eu/users/track", f"{SANDBOX}/braze/users/track"),
        ("https://hooks.example.com/cdp", "https://hooks.example.com/cdp"),  # no fake: left alone
        ("https://api.segment.io/v1/batch", "https://api.segment.io/v1/batch"),
        (
            "https://marketingcloudapis.com.evil.example/v2/token",
            "https://marketingcloudapis.com.evil.example/v2/token",
        ),
    ],
)
def test_the_sandbox_takes_the_calls_to_the_vendor_hosts_it_fakes(settings: Any, url: str, routed: str) -> None:
    settings.SANDBOX_URL = SANDBOX
    assert sandboxed(url) == routed


def test_without_a_sandbox_every_url_is_called_as_it_is(settings: Any) -> None:
    settings.SANDBOX_URL = ""
    assert sandboxed("https://mc-abc123xyz.auth.marketingcloudapis.com/v2/token") == (
        "https://mc-abc123xyz.auth.marketingcloudapis.com/v2/token"
    )


@pytest.mark.usefixtures("private_urls_refused")
def test_the_recorded_exchange_shows_the_sandbox_url_actually_called(
    settings: Any, mocked: responses.RequestsMock
) -> None:
    settings.SANDBOX_URL = SANDBOX
    mocked.post(f"{SANDBOX}/sfmc/auth/v2/token", json={"access_token": "t" * 20, "expires_in": 1079})
    client = HttpClient(5, [])

    client.request("POST", "https://mc-abc123xyz.auth.marketingcloudapis.com/v2/token", json={})

    # The operator's sandbox is on loopback: the private-address guard is for destinations' URLs, not for it.
    assert client.take_exchanges()[0]["request"]["url"] == f"{SANDBOX}/sfmc/auth/v2/token"
