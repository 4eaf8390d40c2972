"""Encrypted JSON for credentials and secret settings: one MultiFernet token per value.

Keys come from CDPHUB_CREDENTIAL_KEYS (comma-separated Fernet keys, newest first: the first encrypts, all
decrypt), else from a key generated once into the data dir. `python manage.py rotate_credential_keys`
re-encrypts every stored value with the newest key, after which older keys can be dropped.

A stored value that no configured key decrypts loads as an `Undecryptable` placeholder instead of breaking
every query that reads the row: lists and pages still work, validation reports "cannot decrypt: check
CDPHUB_CREDENTIAL_KEYS", any attempt to read the secrets raises `UndecryptableValue`, and saving the row
writes the stored token back unchanged, so nothing is lost once the right key is configured again.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, NoReturn

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models
from django.dispatch import receiver

KEYS_ENV = "CDPHUB_CREDENTIAL_KEYS"
KEYS_FILE = "credential_keys"
CANNOT_DECRYPT = f"cannot decrypt: check {KEYS_ENV}"
MASK = "••••••••"  # what a stored or previewed secret shows as: never its value, not even part of it
GENERATE_KEY = "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"

log = logging.getLogger(__name__)


class UndecryptableValue(Exception):
    """A stored value none of the configured keys can decrypt (never shown as if it were plaintext)."""


class Undecryptable:
    """What an encrypted field holds when no configured key decrypts the stored token.

    It is truthy and not a dict, so code that reads secrets fails closed: `get`, `[]`, `in`, iteration and
    `len` raise UndecryptableValue rather than answering "no secret configured". It never reveals the token.
    """

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"<{CANNOT_DECRYPT}>"

    def __str__(self) -> str:
        return CANNOT_DECRYPT

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Undecryptable) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)

    def __copy__(self) -> Undecryptable:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Undecryptable:
        return self

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UndecryptableValue(
            f"A stored secret cannot be decrypted with the configured keys: {CANNOT_DECRYPT} "
            "(the key it was encrypted with is missing)."
        )

    __getitem__ = __iter__ = __contains__ = __len__ = _refuse
    get = keys = values = items = _refuse


def configured_keys() -> list[bytes]:
    """Return the Fernet keys, newest first: CDPHUB_CREDENTIAL_KEYS, else one generated into the data dir."""
    raw = os.environ.get(KEYS_ENV, "").strip()
    origin = KEYS_ENV
    if not raw:
        path = Path(settings.DATA_DIR) / KEYS_FILE
        if not path.exists():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(Fernet.generate_key().decode() + "\n")
        raw = path.read_text()
        origin = str(path)
    keys = [k.strip().encode() for k in raw.replace("\n", ",").split(",") if k.strip()]
    if not keys:
        raise ImproperlyConfigured(f"{origin} holds no key. Generate one with: {GENERATE_KEY}")
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError) as exc:  # the key itself is never part of the message
            raise ImproperlyConfigured(
                f"{origin}: key {number} of {len(keys)} is not a Fernet key (32 url-safe base64-encoded bytes). "
                f"Keys are comma-separated, newest first. Generate one with: {GENERATE_KEY}"
            ) from exc
    return keys


@functools.cache
def primary() -> Fernet:
    """The newest key: the one everything is encrypted with."""
    return Fernet(configured_keys()[0])


@functools.cache
def fernet() -> MultiFernet:
    return MultiFernet([Fernet(k) for k in configured_keys()])


def reset_keys() -> None:
    """Forget the loaded keys; the next use reads CDPHUB_CREDENTIAL_KEYS (or the keys file) again."""
    fernet.cache_clear()
    primary.cache_clear()


@receiver(setting_changed)
def _data_dir_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "DATA_DIR":
        reset_keys()


@checks.register(checks.Tags.security)
def check_credential_keys(**kwargs: Any) -> list[checks.CheckMessage]:
    """Refuse to start with a malformed CDPHUB_CREDENTIAL_KEYS (the generated default is made on first use)."""
    if not os.environ.get(KEYS_ENV, "").strip():
        return []
    try:
        configured_keys()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="integrations.E001")]
    return []


def encrypt(value: Any) -> str:
    return fernet().encrypt(orjson.dumps(value)).decode()


def decrypt(token: str) -> Any:
    try:
        return orjson.loads(fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise UndecryptableValue(f"A stored secret cannot be decrypted: {CANNOT_DECRYPT}.") from exc


class EncryptedJSONField(models.TextField):
    """A JSON value stored as one Fernet token; it cannot be filtered, ordered or indexed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default", dict)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return {}
        try:
            return decrypt(value)
        except UndecryptableValue:
            self._warn_once()
            return Undecryptable(value)

    def to_python(self, value: Any) -> Any:
        return value

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, Undecryptable):
            return value.token  # write back what was read: the right key can still decrypt it later
        return encrypt(value)

    def value_to_string(self, obj: models.Model) -> str:
        return ""  # dumpdata and serializers never carry the plaintext

    @functools.cache  # noqa: B019 - one warning per field per process; fields live as long as the process
    def _warn_once(self) -> None:
        log.warning(
            "%s.%s: stored values cannot be decrypted (%s); run `manage.py rotate_credential_keys` to list them",
            self.model._meta.label if hasattr(self, "model") else "?",
            self.name,
            CANNOT_DECRYPT,
        )
