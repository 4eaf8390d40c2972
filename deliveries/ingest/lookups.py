"""The look-ups made on every request: a write key's source and a source's destinations, kept per process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from integrations.models import Destination, Source

T = TypeVar("T")

# The source of a write key and the destinations of a source are read on every request; each process keeps
# them for INGEST_CACHE_SECONDS (CDPHUB_INGEST_CACHE_SECONDS, default 5). A save or delete of a Source or a
# Destination, or a change of a destination's sources, forgets everything in the process that made it
# (again when its transaction commits); other processes (the other web workers, an admin elsewhere) see the
# change within that many seconds. So disabling a source, or a destination, stops ingest or routing within
# that time everywhere. Bulk updates (QuerySet.update) send no signal and rely on the time limit alone.

CACHE_MAX_ENTRIES = 1000  # unknown write keys are remembered too; a flood of them must not grow memory
_memo: dict[Any, tuple[float, Any]] = {}


def remembered(key: Any, load: Callable[[], T]) -> T:
    """Return `load()`, computed at most once per INGEST_CACHE_SECONDS in this process (0: never kept)."""
    ttl = settings.INGEST_CACHE_SECONDS
    if ttl <= 0:
        return load()
    now = time.monotonic()
    hit = _memo.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = load()
    if len(_memo) >= CACHE_MAX_ENTRIES:
        _memo.clear()
    _memo[key] = (now + ttl, value)
    return value


def forget(**kwargs: Any) -> None:
    """Drop every remembered look-up; a reader may reload the old row until a save commits, so again then."""
    _memo.clear()
    transaction.on_commit(_memo.clear)


for _model in (Source, Destination):
    post_save.connect(forget, sender=_model, dispatch_uid=f"ingest-forget-saved-{_model.__name__}")
    post_delete.connect(forget, sender=_model, dispatch_uid=f"ingest-forget-deleted-{_model.__name__}")
m2m_changed.connect(forget, sender=Destination.sources.through, dispatch_uid="ingest-forget-destination-sources")


def source_for_write_key(write_key: str) -> Source | None:
    """The source with this write key (enabled or not), or None."""
    return remembered(
        ("source", write_key),
        lambda: Source.objects.filter(write_key=write_key).only("id", "enabled", "kind", "write_key").first(),
    )


def destinations_of(source: Source) -> list[Destination]:
    """Every destination the source feeds (disabled ones too: routing records why they get nothing).

    Credentials are left out: routing does not need them, and secrets are not kept in memory for this.
    """
    return remembered(
        ("destinations", source.pk),
        lambda: list(Destination.objects.filter(sources=source.pk).defer("credentials")),
    )
