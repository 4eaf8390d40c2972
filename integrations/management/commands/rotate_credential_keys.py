"""Re-encrypt every stored secret with the newest key of CDPHUB_CREDENTIAL_KEYS.

Rotation: generate a key, set CDPHUB_CREDENTIAL_KEYS="new,old" everywhere (web and workers), run this
command, then drop the old key. It is safe to run while the hub serves traffic and to run again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import InvalidToken
from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models, transaction

from integrations.crypto import KEYS_ENV, EncryptedJSONField, fernet, primary


@dataclass
class Tally:
    rotated: int = 0
    current: int = 0
    empty: int = 0
    changed: int = 0  # written by someone else between our read and our write: run again
    undecryptable: list[Any] = field(default_factory=list)


def encrypted_fields() -> list[tuple[type[models.Model], EncryptedJSONField]]:
    """Every EncryptedJSONField of every installed model, in a stable order."""
    return [
        (model, f)
        for model in apps.get_models()
        for f in model._meta.concrete_fields
        if isinstance(f, EncryptedJSONField)
    ]


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field (source settings, destination credentials, ...) with the newest key."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--chunk-size", type=int, default=500, help="Rows per transaction (default 500)")
        parser.add_argument("--dry-run", action="store_true", help="Count what would change, write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        chunk_size = max(1, options["chunk_size"])
        undecryptable: list[str] = []
        for model, enc_field in encrypted_fields():
            tally = self.rotate(model, enc_field, chunk_size, options["dry_run"])
            label = f"{model._meta.label}.{enc_field.name}"
            verb = "to rotate" if options["dry_run"] else "rotated"
            line = f"{label}: {tally.rotated} {verb}, {tally.current} already on the newest key, {tally.empty} empty"
            if tally.changed:
                line += f", {tally.changed} changed meanwhile (run again)"
            if tally.undecryptable:
                ids = ", ".join(str(pk) for pk in tally.undecryptable)
                line += f", {len(tally.undecryptable)} cannot be decrypted (id {ids})"
                undecryptable.append(f"{model._meta.label} id {ids} ({enc_field.name})")
            self.stdout.write(line)
        if undecryptable:
            raise CommandError(
                f"Some stored values cannot be decrypted: check {KEYS_ENV} (add the key they were encrypted with, "
                "or enter those secrets again): " + "; ".join(undecryptable)
            )

    def rotate(self, model: type[models.Model], enc_field: EncryptedJSONField, chunk_size: int, dry_run: bool) -> Tally:
        """Walk the table by primary key; each chunk is read, re-encrypted in memory, then written in one short
        transaction (SQLite has a single writer). A write only lands if the row still holds what was read."""
        quote = connection.ops.quote_name
        table, column, pk = quote(model._meta.db_table), quote(enc_field.column), quote(model._meta.pk.column)
        first = f"SELECT {pk}, {column} FROM {table} ORDER BY {pk} LIMIT %s"
        after = f"SELECT {pk}, {column} FROM {table} WHERE {pk} > %s ORDER BY {pk} LIMIT %s"
        update = f"UPDATE {table} SET {column} = %s WHERE {pk} = %s AND {column} = %s"
        keys, newest = fernet(), primary()
        tally = Tally()
        last: Any = None
        while True:
            with connection.cursor() as cursor:
                if last is None:
                    cursor.execute(first, [chunk_size])
                else:
                    cursor.execute(after, [last, chunk_size])
                rows = cursor.fetchall()
            if not rows:
                return tally
            last = rows[-1][0]
            writes = []
            for row_pk, token in rows:
                if not token:
                    tally.empty += 1
                    continue
                raw = token.encode() if isinstance(token, str) else bytes(token)
                try:
                    newest.decrypt(raw)
                except InvalidToken:
                    pass
                else:
                    tally.current += 1
                    continue
                try:
                    writes.append((keys.rotate(raw).decode(), row_pk, token))
                except InvalidToken:
                    tally.undecryptable.append(row_pk)
            if dry_run:
                tally.rotated += len(writes)
                continue
            with transaction.atomic(), connection.cursor() as cursor:
                for new_token, row_pk, old_token in writes:
                    cursor.execute(update, [new_token, row_pk, old_token])
                    if cursor.rowcount == 1:
                        tally.rotated += 1
                    else:
                        tally.changed += 1
