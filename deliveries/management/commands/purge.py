from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from deliveries.engine.purge import purge
from deliveries.engine.purge_forecast import forecast

WAITING_NOTE = {
    "deliveries": "still waiting to be sent (pending, retrying or in flight)",
    "test_deliveries": "still waiting to be sent (pending, retrying or in flight)",
}
EVENTS_NOTE = "still have deliveries that are waiting or kept longer"


def when(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z") if moment else "-"


class Command(BaseCommand):
    help = (
        "Delete what is past its retention (the admin's Retention policy; defaults from CDPHUB_RETENTION_*_DAYS), "
        "in small chunks that never hold the database long. --dry-run says what would go and deletes nothing."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true", help="report what would go; delete nothing")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        if dry_run:
            self.dry_run()
        else:
            self.purge()

    def dry_run(self) -> None:
        self.stdout.write("Dry run: nothing is deleted. What the purge would remove now:\n")
        for f in forecast():
            table = f.table
            verb = "would be summarised" if table.summarise else "would go"
            self.stdout.write(
                self.style.MIGRATE_HEADING(f"{table.label}: kept {f.days} day{'s' if f.days != 1 else ''}")
                + f" (older than {when(f.cutoff)})"
            )
            if f.rows:
                also = f" and their {f.children:,} attempts" if table.children else ""
                span = f"from {when(f.oldest)} to {when(f.newest)}"
                self.stdout.write(f"  {verb}: {f.rows:,}{also}, {span}")
            else:
                self.stdout.write(f"  {verb}: none")
            if f.kept:
                note = WAITING_NOTE.get(table.name, EVENTS_NOTE)
                self.stdout.write(f"  kept although older: {f.kept:,} {note}")
            if f.unfolded:
                self.stdout.write(f"  kept for now: {f.unfolded:,} not yet counted on the Schema page (they go after)")
        self.stdout.write(
            "\nRun `python manage.py purge` to remove them now; the worker removes them a little every minute."
        )

    def purge(self) -> None:
        self.stdout.write("Purging what is past its retention, in small chunks ...")
        self.stdout.flush()
        report = purge(from_start=True)
        for done in report.done:
            table = done.table
            if table.summarise:
                line = f"{done.rows:,} summarised (headers and bodies removed)"
            else:
                also = f" and {done.children:,} attempts" if table.children else ""
                line = f"{done.rows:,} deleted{also}"
            self.stdout.write(f"  {table.label}: {line} (kept {done.days} d: older than {when(done.cutoff)})")
        rate = report.rows / report.seconds if report.seconds else 0
        self.stdout.write(
            self.style.SUCCESS(
                f"Done: {report.rows:,} rows deleted in {report.seconds:.1f} s ({rate:,.0f} rows/s), "
                f"{report.chunks:,} chunks, the longest held the database {report.longest_ms:.0f} ms."
            )
        )
