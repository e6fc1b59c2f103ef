"""Change marks: ingestion records *that* a contact's data changed (and what kind of data),
cheaply and inside its own transaction; the segment pass consumes the marks in batches.
Kinds: profile, tag, consent, stage, order, meddic, rfm, event:<name>, segment:<id>."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

from crm import clock
from crm.models import ContactChange


def changes_mark(pairs: Iterable[tuple[int, str]]) -> None:
    """Mark (contact_id, kind) pairs as changed; duplicates within the call are dropped."""
    now = clock.now()
    unique = sorted({(cid, kind[:220]) for cid, kind in pairs if cid})
    if not unique:
        return
    if connection.vendor == "postgresql":
        # one INSERT … SELECT FROM unnest: model instances cost more than the insert itself
        # when a batch marks thousands of contacts (order imports, ingestion batches)
        table = connection.ops.quote_name(ContactChange._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (contact_id, kind, at) "
                "SELECT c, k, %s FROM unnest(%s::bigint[], %s::text[]) AS v(c, k)",
                [now, [c for c, _ in unique], [k for _, k in unique]],
            )
        return
    ContactChange.objects.bulk_create(
        [ContactChange(contact_id=cid, kind=kind, at=now) for cid, kind in unique],
        batch_size=2000,
    )


def changes_mark_contacts(contact_ids: Iterable[int], kind: str) -> None:
    changes_mark((cid, kind) for cid in contact_ids)


def changes_claim(limit: int) -> list[tuple[int, str]]:
    """Take up to `limit` marks off the queue (oldest first). Concurrent passes take
    different rows (SKIP LOCKED); a rolled-back pass leaves its rows for the next one."""
    table = connection.ops.quote_name(ContactChange._meta.db_table)
    lock = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT %s{lock}) "
            "RETURNING contact_id, kind",
            [limit],
        )
        return list(cursor.fetchall())
