"""Marketo's REST client, what every Marketo call shares: the OAuth token (one new token on 601/602), the JSON
envelope (errors inside HTTP 200, §2.2), a 413 split in halves, and the wrong-host hint."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus, urlencode

import orjson
import requests

from integrations.vendors.contract import DeliveryError, Vendor
from integrations.vendors.http import describe_response
from integrations.vendors.marketo.config import MarketoConfig, MarketoCredentials
from integrations.vendors.marketo.errors import HINTS, TOKEN_CODES, TooLarge, first_problem, marketo_error
from integrations.vendors.oauth import SharedToken, token_key

# A name that does not exist (a typo in the Munchkin ID), not a resolver outage ("Temporary failure", EAI_AGAIN).
NO_HOST = re.compile(r"name or service not known|nodename nor servname|no address associated", re.I)
TOKEN_ROLLOVER_WAIT = 1.0  # expires_in 0: the token is rolling over, ask again after this long (§2.1)
WRONG_HOST = HINTS["610"]


class MarketoRest(Vendor):
    """The calls; the Marketo vendor (vendor.py) decides which to make."""

    config: MarketoConfig
    credentials: MarketoCredentials
    hints = HINTS

    def __init__(self, config: dict[str, Any], credentials: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(config, credentials, *args, **kwargs)
        key = token_key("marketo", self.config.base, self.credentials.client_id, self.credentials.client_secret)
        self.token = SharedToken(key, self.state.tokens, self._fetch_token, self.http.timeout)
        self.calls = 0  # REST calls of the current deliver(): the engine counted the first one

    def _post(
        self, path: str, records: list[dict[str, Any]], wrap: Callable[[list[dict[str, Any]]], dict[str, Any]]
    ) -> list[dict[str, Any] | DeliveryError]:
        """POST the records, one answer each in input order; over 1 MB (413), each half separately (§2.2)."""
        try:
            answer = self._call("POST", path, body=wrap(records))
        except TooLarge as error:
            if len(records) == 1:
                return [error]
            half = len(records) // 2
            return self._post(path, records[:half], wrap) + self._post(path, records[half:], wrap)
        result = answer.get("result")
        if not isinstance(result, list) or len(result) != len(records):
            count = len(result) if isinstance(result, list) else "no"
            raise DeliveryError(
                f"Marketo answered {count} results for {len(records)} records.",
                code="invalid_response",
                retryable=True,
                status_code=200,
            )
        return [item if isinstance(item, dict) else {} for item in result]

    def _call(self, method: str, path: str, *, body: Any = None, form: dict[str, str] | None = None) -> dict[str, Any]:
        """One REST call with the bearer token; the answer when `success` is true. A 601/602 gets one new token."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        data = orjson.dumps(body) if body is not None else form
        token, renewed = self.token.get().access_token, False
        while True:
            self.http.add_secret(token)
            extra, self.calls = self.calls > 0, self.calls + 1
            headers["Authorization"] = f"Bearer {token}"
            answer = self._json(
                self._request(method, f"{self.config.base}/rest/v1/{path}", data=data, headers=headers, extra=extra)
            )
            if answer.get("success") is True:
                return answer
            code, message = first_problem(answer.get("errors"))
            if code not in TOKEN_CODES or renewed:
                raise marketo_error(code, message)
            token, renewed = self.token.get(replacing=token).access_token, True

    def _fetch_token(self) -> tuple[dict[str, Any], float]:
        """Ask the identity endpoint; Marketo gives the same token until it expires, with the seconds it has left."""
        credentials = {"client_id": self.credentials.client_id, "client_secret": self.credentials.client_secret}
        for value in credentials.values():
            if quote_plus(value) != value:
                self.http.add_secret(quote_plus(value))  # the URL carries it encoded: redact that form too
        url = f"{self.config.base}/identity/oauth/token?" + urlencode(
            {"grant_type": "client_credentials", **credentials}
        )
        for _ in range(3):
            response = self._request("GET", url)
            if response.status_code == 401:
                raise DeliveryError(
                    f"Marketo refused the client id or secret ({describe_response(response)}).",
                    code="invalid_credentials",
                    hint=HINTS["invalid_credentials"],
                    status_code=401,
                )
            answer = self._json(response)
            token, expires_in = answer.get("access_token"), answer.get("expires_in")
            if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
                raise DeliveryError(
                    "Marketo's identity endpoint answered without an access token.",
                    code="invalid_response",
                    retryable=True,
                    status_code=response.status_code,
                )
            self.http.add_secret(token)
            if expires_in > 0:
                return {"access_token": token}, float(expires_in)
            time.sleep(TOKEN_ROLLOVER_WAIT)
        raise DeliveryError(
            "Marketo kept answering with a token about to expire.", code="token_rollover", retryable=True
        )

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.http.request(method, url, **kwargs)
        except DeliveryError as error:
            if error.code == "dns_error" or NO_HOST.search(error.message):
                error.hint = WRONG_HOST
            raise

    def _json(self, response: requests.Response) -> dict[str, Any]:
        """A 2xx answer's JSON object; other statuses as the base class classifies them, 413 as TooLarge."""
        if response.status_code == 413:
            raise TooLarge(
                "The request is over Marketo's 1 MB limit.",
                code="payload_too_large",
                hint=HINTS["payload_too_large"],
                status_code=413,
            )
        if not 200 <= response.status_code < 300:
            result = self.classify(response)
            raise DeliveryError(
                result.error_message,
                code=result.error_code,
                retryable=result.outcome == "retry",
                throttled=result.outcome == "throttled",
                retry_after=result.retry_after,
                status_code=result.status_code,
                hint=WRONG_HOST if response.status_code == 404 else "",
            )
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise DeliveryError(
                f"Marketo answered HTTP {response.status_code} without its JSON envelope.",
                code="invalid_response",
                hint=WRONG_HOST,
                status_code=response.status_code,
            )
        return answer
