"""Salesforce Marketing Cloud data extensions: rows upserted through the synchronous rowset route (§1.5)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from integrations.vendors.contract import DeliveryError, Result
from integrations.vendors.sfmc.base import (
    EMAIL,
    FIRST_NAME,
    LAST_NAME,
    PHONE,
    Sfmc,
    SfmcHosts,
    copies,
    key_value,
    without_nulls,
)


@dataclass(kw_only=True)
class SfmcDataExtensionConfig(SfmcHosts):
    data_extension_key: str

    def check(self) -> list[str]:
        blank = not self.data_extension_key.strip()
        return super().check() + (["data_extension_key: required (the data extension's External Key)"] if blank else [])


class SfmcDataExtension(Sfmc):
    """Upsert rows into a data extension through the synchronous rowset route (§1.5), 50 rows a call."""

    key = "sfmc_data_extension"
    label = "Salesforce Marketing Cloud data extension"
    kind = "data_extension"
    config_class = SfmcDataExtensionConfig
    max_batch = 50  # SFMC's advice for rowset calls
    calls_per_batch = 52  # the call, once more after a 401, and one per row when SFMC refuses part of the batch
    mapping_shape = {
        "keys": (True, dict, 'an object of primary key column → expression, e.g. {"ContactKey": "userId"}'),
        "values": (False, dict, "an object of column → expression"),
    }
    default_mapping: ClassVar[dict[str, Any]] = {
        "keys": {"ContactKey": "userId"},
        "values": {
            "Email": EMAIL,
            "FirstName": FIRST_NAME,
            "LastName": LAST_NAME,
            "Phone": PHONE,
            "Plan": "traits.plan || context.traits.plan",
            "LastSeen": "timestamp",
        },
    }

    def recognise(self, status: int, errorcode: int | None, message: str, aggregate: bool) -> str:
        text = message.lower()
        if status == 400 and "primary key" in text:
            return "missing_primary_key"
        if status == 400 and "column" in text and "does not exist" in text:
            return "unknown_column"
        if (status == 404 and errorcode == 30003) or (
            "data extension" in text and re.search("does not exist|not found", text)
        ):
            return "unknown_data_extension"
        return super().recognise(status, errorcode, message, aggregate)

    def deliver(self, events: list[dict[str, Any]]) -> list[Result]:
        results: dict[int, Result] = {}
        rows: list[tuple[int, dict[str, Any]]] = []
        for i, event in enumerate(events):
            try:
                rows.append((i, self.row(event)))
            except DeliveryError as error:
                results[i] = error.result([])
        url = self.rowset_url
        if rows:
            batch, _ = self.call(url, [row for _, row in rows])
            if batch.outcome == "failed" and batch.status_code == 400 and len(rows) > 1:
                outcomes = self.one_by_one(url, [row for _, row in rows], batch.exchanges)
            else:
                outcomes = copies(batch, len(rows))
            for (i, _), result in zip(rows, outcomes, strict=True):
                results[i] = result
        return [results[i] for i in range(len(events))]

    def row(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event's row ({"keys", "values"}); DeliveryError when a primary key has no value."""
        mapped = self.map_event(event)
        mapped = mapped if isinstance(mapped, dict) else {}
        keys = mapped.get("keys") if isinstance(mapped.get("keys"), dict) else {}
        blank = [name for name, value in keys.items() if key_value(value) is None]
        if not keys or blank:
            message = f"The row has no value for the primary key {', '.join(blank) or '(mapping.keys is empty)'}."
            raise self.fail("missing_primary_key", message)
        return {"keys": keys, "values": without_nulls(mapped.get("values"))}

    @property
    def rowset_url(self) -> str:
        return f"{self.config.rest}/hub/v1/dataevents/key:{quote(self.config.data_extension_key, safe='')}/rowset"

    def preview(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.preview_call(self.rowset_url, [self.row(event)])]

    def one_by_one(self, url: str, rows: list[dict[str, Any]], before: list[dict[str, Any]]) -> list[Result]:
        """Resend each row alone after a refused batch: SFMC saved the rows before the first bad one and rejected
        the rest without saying which (§1.5); upserts are idempotent, so only the bad rows fail."""
        outcomes: list[Result] = []
        for n, row in enumerate(rows):
            result, _ = self.call(url, [row], extra=True)
            result.exchanges = before + result.exchanges
            if not (result.ok or (result.outcome == "failed" and result.status_code == 400)):
                return outcomes + copies(result, len(rows) - n)  # not about this row: the rest share it
            outcomes.append(result)
        return outcomes
