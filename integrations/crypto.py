"""Encrypted JSON for credentials and secret settings: one MultiFernet token per value."""

from __future__ import annotations

import functools
import os
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

KEYS_FILE = "credential_keys"


class UndecryptableValue(Exception):
    """A stored value none of the configured keys can decrypt (never shown as if it were plaintext)."""


def configured_keys() -> list[bytes]:
    """Return the Fernet keys, newest first: CDPHUB_CREDENTIAL_KEYS, else one generated into the data dir."""
    raw = os.environ.get("CDPHUB_CREDENTIAL_KEYS", "").strip()
    if not raw:
        path = settings.DATA_DIR / KEYS_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(Fernet.generate_key().decode() + "\n")
        raw = path.read_text()
    keys = [k.strip().encode() for k in raw.replace("\n", ",").split(",") if k.strip()]
    for key in keys:
        try:
            Fernet(key)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                "CDPHUB_CREDENTIAL_KEYS must be comma-separated Fernet keys "
                "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            ) from exc
    return keys


@functools.cache
def fernet() -> MultiFernet:
    return MultiFernet([Fernet(k) for k in configured_keys()])


def encrypt(value: Any) -> str:
    return fernet().encrypt(orjson.dumps(value)).decode()


def decrypt(token: str) -> Any:
    try:
        return orjson.loads(fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise UndecryptableValue(
            "A stored secret cannot be decrypted with the configured CDPHUB_CREDENTIAL_KEYS."
        ) from exc


class EncryptedJSONField(models.TextField):
    """A JSON value stored as one Fernet token; it cannot be filtered, ordered or indexed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default", dict)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return {}
        return decrypt(value)

    def to_python(self, value: Any) -> Any:
        return value

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return encrypt(value)

    def value_to_string(self, obj: models.Model) -> str:
        return ""  # dumpdata and serializers never carry the plaintext
