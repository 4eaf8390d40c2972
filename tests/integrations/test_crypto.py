"""Encrypted fields: keys newest first, rotation with rotate_credential_keys, and rows no key can decrypt."""

from __future__ import annotations

import copy
import stat
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import CommandError, call_command
from django.db import connection

from integrations import crypto
from integrations.crypto import CANNOT_DECRYPT, KEYS_ENV, Undecryptable, UndecryptableValue, reset_keys
from integrations.models import Destination, Source
from integrations.vendors import DeliveryError

pytestmark = pytest.mark.django_db

OLD, NEW, STRANGER = (Fernet.generate_key().decode() for _ in range(3))
SECRET = "whsec_b3JhbmdlLWp1aWNl"
API_KEY = "ak_live_4f9d2c7e1b"
SETTINGS = {"signing_secret": SECRET}
CREDENTIALS = {"signing_secret": SECRET, "headers": {"X-Api-Key": API_KEY}}

UseKeys = Callable[..., None]


@pytest.fixture
def use_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[UseKeys]:
    """Configure CDPHUB_CREDENTIAL_KEYS (newest first) as a restarted process would read it."""

    def use(*keys: str) -> None:
        monkeypatch.setenv(KEYS_ENV, ",".join(keys))
        reset_keys()

    yield use
    monkeypatch.undo()
    reset_keys()


def raw(model: type, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def make_rows() -> tuple[Source, Destination]:
    source = Source.objects.create(name="Stripe", slug="stripe", kind="stripe", settings=SETTINGS)
    destination = Destination.objects.create(
        name="Hook", slug="hook", vendor="webhook", config={"url": "https://example.com/in"}, credentials=CREDENTIALS
    )
    destination.sources.add(source)
    return source, destination


def rotate(*args: str) -> list[str]:
    out = StringIO()
    call_command("rotate_credential_keys", *args, stdout=out)
    return out.getvalue().splitlines()


def test_rows_encrypted_with_an_old_key_decrypt_while_it_is_listed_after_the_new_one(use_keys: UseKeys) -> None:
    use_keys(OLD)
    source, destination = make_rows()
    use_keys(NEW, OLD)
    assert Source.objects.get(pk=source.pk).settings == SETTINGS
    assert Destination.objects.get(pk=destination.pk).credentials == CREDENTIALS
    # New writes use the newest key.
    destination.save()
    assert orjson.loads(Fernet(NEW).decrypt(raw(Destination, "credentials", destination.pk))) == CREDENTIALS


def test_rotation_re_encrypts_every_row_with_the_newest_key(use_keys: UseKeys) -> None:
    use_keys(OLD)
    source, destination = make_rows()
    use_keys(NEW, OLD)

    lines = rotate()
    assert "integrations.Source.settings: 1 rotated, 0 already on the newest key, 0 empty" in lines
    assert "integrations.Destination.credentials: 1 rotated, 0 already on the newest key, 0 empty" in lines
    for model, column, pk, expected in (
        (Source, "settings", source.pk, SETTINGS),
        (Destination, "credentials", destination.pk, CREDENTIALS),
    ):
        token = raw(model, column, pk)
        assert orjson.loads(Fernet(NEW).decrypt(token)) == expected  # a bare Fernet with the new key alone
        with pytest.raises(InvalidToken):
            Fernet(OLD).decrypt(token)

    use_keys(NEW)  # the old key is dropped: everything still loads
    assert Source.objects.get(pk=source.pk).settings == SETTINGS
    assert Destination.objects.get(pk=destination.pk).credentials == CREDENTIALS
    assert "integrations.Destination.credentials: 0 rotated, 1 already on the newest key, 0 empty" in rotate()


def test_rotation_works_in_chunks_and_a_dry_run_writes_nothing(use_keys: UseKeys) -> None:
    use_keys(OLD)
    ids = [Source.objects.create(name=f"S{i}", slug=f"s{i}", settings={"n": i}).pk for i in range(7)]
    use_keys(NEW, OLD)
    before = [raw(Source, "settings", pk) for pk in ids]
    assert "integrations.Source.settings: 7 to rotate, 0 already on the newest key, 0 empty" in rotate("--dry-run")
    assert [raw(Source, "settings", pk) for pk in ids] == before

    assert "integrations.Source.settings: 7 rotated, 0 already on the newest key, 0 empty" in rotate(
        "--chunk-size", "3"
    )
    use_keys(NEW)
    assert [s.settings for s in Source.objects.filter(pk__in=ids).order_by("pk")] == [{"n": i} for i in range(7)]


def test_a_row_no_key_decrypts_is_reported_and_the_others_are_still_rotated(use_keys: UseKeys) -> None:
    use_keys(STRANGER)
    lost = Destination.objects.create(
        name="Lost", slug="lost", vendor="webhook", config={"url": "https://example.com/x"}, credentials=CREDENTIALS
    )
    lost_token = raw(Destination, "credentials", lost.pk)
    use_keys(OLD)
    source, destination = make_rows()
    use_keys(NEW, OLD)

    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("rotate_credential_keys", stdout=out)
    message = str(raised.value)
    assert f"integrations.Destination id {lost.pk} (credentials)" in message
    assert f"cannot be decrypted: check {KEYS_ENV}" in message
    printed = out.getvalue() + message
    assert f"1 rotated, 0 already on the newest key, 0 empty, 1 cannot be decrypted (id {lost.pk})" in printed
    for secret in (SECRET, API_KEY, lost_token, NEW, OLD, STRANGER):
        assert secret not in printed
    # The rows before and after the bad one were rotated; the bad one is left as it was.
    assert orjson.loads(Fernet(NEW).decrypt(raw(Destination, "credentials", destination.pk))) == CREDENTIALS
    assert orjson.loads(Fernet(NEW).decrypt(raw(Source, "settings", source.pk))) == SETTINGS
    assert raw(Destination, "credentials", lost.pk) == lost_token


def test_the_command_exits_non_zero_when_a_value_cannot_be_decrypted(use_keys: UseKeys) -> None:
    use_keys(STRANGER)
    Source.objects.create(name="S", slug="s", settings=SETTINGS)
    use_keys(NEW)
    with pytest.raises(CommandError):
        call_command("rotate_credential_keys", stdout=StringIO())
    # CommandError is what `manage.py` turns into exit status 1.
    assert CommandError("x").returncode == 1


def test_the_raw_column_never_holds_the_plaintext(use_keys: UseKeys) -> None:
    use_keys(NEW)
    source, destination = make_rows()
    for token in (raw(Source, "settings", source.pk), raw(Destination, "credentials", destination.pk)):
        for plain in (SECRET, API_KEY, "signing_secret", "X-Api-Key", "headers"):
            assert plain not in token
        assert token.startswith("gAAAA")  # one Fernet token for the whole value


@pytest.mark.parametrize("value", ["not-a-key", f"{NEW},short", f"{NEW}, {OLD[:-4]}"])
def test_an_invalid_key_is_a_clear_improperly_configured_error(use_keys: UseKeys, value: str) -> None:
    use_keys(value)
    with pytest.raises(ImproperlyConfigured) as raised:
        crypto.encrypt({"a": 1})
    message = str(raised.value)
    assert KEYS_ENV in message
    assert "is not a Fernet key" in message
    assert "Fernet.generate_key()" in message  # says how to make one
    for part in value.split(","):
        assert part.strip() not in message  # never echoes a key
    errors = crypto.check_credential_keys()
    assert [e.id for e in errors] == ["integrations.E001"]


def test_a_good_key_list_passes_the_system_check(use_keys: UseKeys) -> None:
    use_keys(NEW, OLD)
    assert crypto.check_credential_keys() == []


@pytest.mark.parametrize(
    "value",
    [
        {"int": 42, "float": 2.5, "negative": -7, "big": 2**53, "yes": True, "no": False, "none": None},
        {"nested": {"deeper": {"list": [1, "two", 3.0, False, None, {"k": "v"}]}}, "empty": {}, "list": []},
        {"unicode": "clé secrète ✓", "quote": 'a "b" \\ c'},
        ["a", "list", 1],
        "a bare string",
        12345,
    ],
)
def test_types_survive_the_round_trip(use_keys: UseKeys, value: object) -> None:
    use_keys(NEW)
    source = Source.objects.create(name="S", slug="s", settings=value)
    assert Source.objects.get(pk=source.pk).settings == value
    assert type(Source.objects.get(pk=source.pk).settings) is type(value)


def test_decrypt_raises_and_never_returns_the_ciphertext(use_keys: UseKeys) -> None:
    use_keys(OLD)
    token = crypto.encrypt({"a": 1})
    use_keys(NEW)
    with pytest.raises(UndecryptableValue, match=KEYS_ENV):
        crypto.decrypt(token)


def test_a_row_no_key_decrypts_loads_as_a_placeholder_that_refuses_to_be_read(use_keys: UseKeys) -> None:
    use_keys(OLD)
    source, destination = make_rows()
    token = raw(Destination, "credentials", destination.pk)
    use_keys(NEW)

    # Querysets that load the rows keep working (admin lists, routing, the worker's lookups).
    loaded = Destination.objects.get(pk=destination.pk)
    assert [d.slug for d in Destination.objects.all()] == ["hook"]
    locked = loaded.credentials
    assert isinstance(locked, Undecryptable)
    assert isinstance(Source.objects.get(pk=source.pk).settings, Undecryptable)
    assert str(locked) == CANNOT_DECRYPT
    assert token not in repr(locked)
    assert copy.deepcopy(locked) is locked
    assert locked  # truthy: code that checks "is there a secret?" goes on to read it, and fails closed
    for read in (
        lambda: locked.get("signing_secret"),
        lambda: locked["signing_secret"],
        lambda: "signing_secret" in locked,
        lambda: list(locked),
        lambda: dict(locked),
    ):
        with pytest.raises(UndecryptableValue):
            read()

    # Validation names the problem; the worker gets a DeliveryError, not a crash.
    with pytest.raises(ValidationError) as raised:
        loaded.full_clean()
    assert raised.value.message_dict["credentials"][0].startswith(f"credentials: {CANNOT_DECRYPT}")
    with pytest.raises(DeliveryError):
        loaded.build_vendor()

    # Saving the row (e.g. from the admin, another field changed) writes the stored token back unchanged.
    loaded.name = "Hook, renamed"
    loaded.save()
    assert raw(Destination, "credentials", destination.pk) == token
    use_keys(NEW, OLD)  # the missing key comes back: nothing was lost
    assert Destination.objects.get(pk=destination.pk).credentials == CREDENTIALS


def test_without_keys_configured_one_is_generated_into_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path
) -> None:
    monkeypatch.delenv(KEYS_ENV, raising=False)
    settings.DATA_DIR = tmp_path  # the setting_changed signal forgets the loaded keys
    try:
        token = crypto.encrypt({"a": 1})
        path = tmp_path / crypto.KEYS_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        key = path.read_text().strip()
        assert orjson.loads(Fernet(key).decrypt(token)) == {"a": 1}
        reset_keys()
        assert crypto.decrypt(token) == {"a": 1}  # the same key is read back, not a new one made
        assert path.read_text().strip() == key
    finally:
        reset_keys()


def test_vendor_settings_report_unreadable_credentials_instead_of_a_type_error() -> None:
    from integrations.typed_settings import parse_settings

    settings, problems = parse_settings(dict, crypto.Undecryptable("gAAAA-old-token"), "credentials")

    assert settings is None
    assert problems == [f"credentials: {crypto.CANNOT_DECRYPT}"]
    assert "gAAAA" not in problems[0]
