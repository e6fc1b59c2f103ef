"""Orders from a CSV file (`manage.py import_orders FILE.csv`), fast enough for millions
of rows.

Columns (a header row, in any order): external_id, contact_external_id, contact_email,
ordered_at, total, currency. Each row needs external_id, ordered_at (ISO 8601; a date alone
is midnight, no offset is UTC), total (≥ 0, up to 4 decimals) and contact_external_id or
contact_email; currency defaults to KEEPERS_BASE_CURRENCY. The contact is found by
external id, then by email, and created when unknown (an email-only contact gains the
row's external id, as the API does).

Set-based, in batches (default 5,000 rows, each its own transaction): one query resolves
the batch's contacts, one INSERT creates the missing ones, and one INSERT … ON CONFLICT
(external_id) DO NOTHING stores the orders, so an order already stored (or repeated in the
file) is skipped and counted, and running the same file again is a no-op. Bad rows go to
an error report (CSV: line, field, message) beside the file, or --errors PATH; the others
are imported.

Imported orders are history: each is recorded as its "Order Completed" event marked as
backfill (one more INSERT a batch, crm/services/orders.py: one order path), so goals and
segments see it but no journey starts from it; they are not announced as "order placed"
(no loyalty points) and stages and RFM scores are not recomputed per batch; pass
--recompute to run the set-based recomputes once at the end, or run
`manage.py recompute_stages` afterwards (RFM and the CLV fit run nightly). Segments that
read orders see the change through the usual change marks.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from crm import bus, clock
from crm.db import bulk_update_rows, insert_ignore_returning
from crm.errors import KeepersError
from crm.models import Contact, Order, OrderStatus, Stage, StageChange
from crm.services.changes import changes_mark_contacts
from crm.services.contacts import (
    Identity,
    _contacts_create_missing,
    email_normalize,
)
from crm.services.orders import OrderIn, order_events_record
from crm.services.parsing import parse_currency, parse_datetime, parse_money, parse_str

COLUMNS = (
    "external_id",
    "contact_external_id",
    "contact_email",
    "ordered_at",
    "total",
    "currency",
)
REQUIRED = ("external_id", "ordered_at", "total")
BATCH_SIZE = 5_000


@dataclass
class OrderRow:
    line: int
    external_id: str
    contact_external_id: str | None
    contact_email: str | None
    ordered_at: datetime
    total: Decimal
    currency: str


@dataclass
class OrderImportReport:
    rows: int = 0
    created: int = 0
    skipped: int = 0  # already stored, or repeated in the file
    errors: int = 0
    contacts_created: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


Progress = Callable[[OrderImportReport], None]


def orders_import_file(
    path: Path,
    *,
    errors_to: TextIO,
    batch_size: int = BATCH_SIZE,
    source: str = "import",
    progress: Progress | None = None,
) -> OrderImportReport:
    """Import the orders in the CSV file at `path`, writing bad rows (line, field, message)
    to `errors_to`. Raises KeepersError for a file it cannot read at all (no header, an
    unknown or missing column)."""
    started = time.monotonic()
    report = OrderImportReport()
    errors = csv.writer(errors_to)
    errors.writerow(["line", "field", "message"])
    emails: dict[str, tuple[str | None, str | None]] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        batch: list[OrderRow] = []
        for line, values, problem in _records(handle):
            report.rows += 1
            try:
                if problem:
                    raise KeepersError(problem)
                batch.append(_parse(line, values, emails))
            except KeepersError as error:
                report.errors += 1
                errors.writerow([line, error.field or "", error.message])
            if len(batch) >= batch_size:
                _store(batch, report, source)
                batch, emails = [], {}
                report.seconds = time.monotonic() - started
                if progress:
                    progress(report)
        if batch:
            _store(batch, report, source)
    report.seconds = time.monotonic() - started
    if progress:
        progress(report)
    return report


def _records(handle: TextIO) -> Iterator[tuple[int, dict[str, str], str | None]]:
    """(line number, {column: value}, problem) per data row, blank lines skipped; the
    problem says what is wrong with a row that has the wrong number of fields."""
    reader = csv.reader(handle)
    header = next(reader, None)
    if not header:
        raise KeepersError("The file is empty or has no header row.", field="file")
    names = [name.strip().lower() for name in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise KeepersError(
            f"Unknown column '{unknown[0]}'; the columns are {', '.join(COLUMNS)}.",
            field="file",
        )
    repeated = [n for n in names if names.count(n) > 1]
    if repeated:
        raise KeepersError(f"The column '{repeated[0]}' appears twice.", field="file")
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise KeepersError(f"The header has no '{missing[0]}' column.", field="file")
    if "contact_external_id" not in names and "contact_email" not in names:
        raise KeepersError(
            "The header needs a contact_external_id or a contact_email column.", field="file"
        )
    width = len(names)
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            yield reader.line_num, {}, f"The row has {len(row)} fields; the header has {width}."
            continue
        yield reader.line_num, dict(zip(names, row, strict=True)), None


def _parse(line: int, values: dict[str, str], emails: dict) -> OrderRow:
    raw_email = values.get("contact_email", "").strip()
    email = None
    if raw_email:
        # Customers order many times: validate each address once per batch.
        if raw_email not in emails:
            try:
                emails[raw_email] = (email_normalize(raw_email, field_name="contact_email"), None)
            except KeepersError as error:
                emails[raw_email] = (None, error.message)
        email, message = emails[raw_email]
        if message:
            raise KeepersError(message, field="contact_email")
    contact_external_id = (
        parse_str(values.get("contact_external_id"), "contact_external_id") or None
    )
    if not email and not contact_external_id:
        raise KeepersError(
            "Give the customer's contact_external_id or contact_email.",
            field="contact_email",
            code="required",
        )
    return OrderRow(
        line=line,
        external_id=parse_str(values.get("external_id"), "external_id", required=True),
        contact_external_id=contact_external_id,
        contact_email=email,
        ordered_at=parse_datetime(values.get("ordered_at"), "ordered_at"),
        total=parse_money(values.get("total"), "total"),
        currency=parse_currency(
            values.get("currency") or settings.KEEPERS_BASE_CURRENCY, "currency"
        ),
    )


# --- one batch ---------------------------------------------------------------------------------


@transaction.atomic
def _store(batch: list[OrderRow], report: OrderImportReport, source: str) -> None:
    """Resolve (and create) the batch's contacts, then insert its orders: at most a dozen
    queries whatever the batch size."""
    contact_ids = _contacts_resolve(batch, report, source)
    rows, seen = [], set()
    for row, contact_id in zip(batch, contact_ids, strict=True):
        if row.external_id in seen:
            report.skipped += 1  # repeated in this batch: the first row wins
            continue
        seen.add(row.external_id)
        rows.append((row, contact_id))
    inserted = dict(_orders_insert(rows, source))
    report.created += len(inserted)
    report.skipped += len(rows) - len(inserted)
    order_events_record(
        [
            (
                OrderIn(
                    external_id=row.external_id,
                    identity=Identity(),
                    total=row.total,
                    currency=row.currency,
                    ordered_at=row.ordered_at,
                    lines=[],
                    attributes={},
                    source=source,
                    backfill=True,
                ),
                contact_id,
            )
            for row, contact_id in rows
            if row.external_id in inserted
        ]
    )
    changes_mark_contacts(set(inserted.values()), "order")


def _contacts_resolve(batch: list[OrderRow], report: OrderImportReport, source: str) -> list[int]:
    """A contact id per row: by external id, then by email; unknown people created."""
    emails = {r.contact_email for r in batch if r.contact_email}
    external_ids = {r.contact_external_id for r in batch if r.contact_external_id}
    by_email, by_external, has_external = _contacts_find(emails, external_ids)

    def lookup(row: OrderRow) -> int | None:
        if row.contact_external_id and row.contact_external_id in by_external:
            return by_external[row.contact_external_id]
        if row.contact_email:
            return by_email.get(row.contact_email)
        return None

    # People known by email take their new external id first, so that a later row with
    # only that id finds them instead of creating someone new.
    _external_ids_attach(batch, by_email, by_external, has_external)
    missing: dict[tuple, Identity] = {}
    for row in batch:
        if lookup(row) is None:
            key = (
                ("x", row.contact_external_id)
                if row.contact_external_id
                else ("e", row.contact_email)
            )
            missing.setdefault(
                key, Identity(email=row.contact_email, external_id=row.contact_external_id)
            )
    if missing:
        _contacts_create(list(missing.values()), source)
        found_email, found_external, found_has = _contacts_find(
            {i.email for i in missing.values() if i.email},
            {i.external_id for i in missing.values() if i.external_id},
        )
        created = (set(found_email.values()) | set(found_external.values())) - (
            set(by_email.values()) | set(by_external.values())
        )
        report.contacts_created += len(created)
        by_email.update(found_email)
        by_external.update(found_external)
        has_external |= found_has
        _external_ids_attach(batch, by_email, by_external, has_external)
    ids = [lookup(row) for row in batch]
    if any(pk is None for pk in ids):  # cannot happen short of a concurrent erasure
        raise KeepersError("A contact could not be found or created; run the import again.")
    return ids  # type: ignore[return-value]


def _contacts_create(identities: list[Identity], source: str) -> None:
    """Create the people not found, as contacts._contacts_create_missing does (anyone a
    concurrent writer created first is skipped and found by the caller's re-read; the new
    contacts get their first stage, a change mark and a ContactCreated announcement). On
    PostgreSQL in three statements: the contacts in one INSERT … SELECT FROM unnest(emails,
    external ids) with every other column a constant, then their stage changes and change
    marks the same way; the ORM's multi-row VALUES of every column, and its model objects,
    made new customers the import's bottleneck (5,000 rows/s)."""
    if connection.vendor != "postgresql":
        _contacts_create_missing(identities, source=source)
        return
    # The same order as _contacts_create_missing, so concurrent writers lock alike.
    identities = sorted(identities, key=lambda i: (i.external_id or "", i.email or ""))
    now = clock.now()
    given = {
        "source": source,
        "created_at": now,
        "updated_at": now,
        "stage_changed_at": now,
        "stage": Stage.SUBSCRIBER,
    }
    qn = connection.ops.quote_name
    columns, values, params = [], [], []
    for model_field in Contact._meta.concrete_fields:
        if model_field.primary_key:
            continue
        columns.append(qn(model_field.column))
        if model_field.name in ("email", "external_id"):
            values.append(f"v.{model_field.name}")
            continue
        values.append("%s")
        value = given[model_field.name] if model_field.name in given else model_field.get_default()
        params.append(model_field.get_db_prep_save(value, connection))
    sql = (
        f"INSERT INTO {qn(Contact._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM unnest(%s::text[], %s::text[]) AS v(email, external_id) "
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    params += [[i.email for i in identities], [i.external_id for i in identities]]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        created = sorted(pk for (pk,) in cursor.fetchall())
        if not created:
            return
        # What contacts._contacts_created records, without building a model per row.
        cursor.execute(
            f"INSERT INTO {qn(StageChange._meta.db_table)} "
            "(contact_id, from_stage, to_stage, at, reason) "
            "SELECT id, '', %s, %s, %s FROM unnest(%s::bigint[]) AS id",
            [Stage.SUBSCRIBER, now, "contact created", created],
        )
    changes_mark_contacts(set(created), "profile")
    bus.publish_many([bus.ContactCreated(contact_id=pk, source=source) for pk in created])


def _contacts_find(emails: set[str], external_ids: set[str]) -> tuple[dict, dict, set[int]]:
    """One query: {email: id}, {external_id: id}, and the ids that have an external id."""
    if not emails and not external_ids:
        return {}, {}, set()
    by_email: dict[str, int] = {}
    by_external: dict[str, int] = {}
    has_external: set[int] = set()
    for pk, email, external_id in Contact.objects.filter(
        Q(email__in=emails) | Q(external_id__in=external_ids)
    ).values_list("pk", "email", "external_id"):
        if email:
            by_email[email] = pk
        if external_id:
            by_external[external_id] = pk
            has_external.add(pk)
    return by_email, by_external, has_external


def _external_ids_attach(
    batch: list[OrderRow], by_email: dict, by_external: dict, has_external: set[int]
) -> None:
    """A row with an unknown contact_external_id whose email belongs to a contact without
    an external id: that contact takes the id (one UPDATE for the batch). Should another
    writer take the id first, the rows still resolve by email."""
    attach: dict[int, str] = {}
    taken: set[str] = set()
    for row in batch:
        ext, email = row.contact_external_id, row.contact_email
        if not ext or ext in by_external or ext in taken or email not in by_email:
            continue
        pk = by_email[email]
        if pk in has_external or pk in attach:
            continue
        attach[pk] = ext
        taken.add(ext)
    if not attach:
        return
    now = clock.now()
    try:
        with transaction.atomic():
            bulk_update_rows(
                [Contact(pk=pk, external_id=ext, updated_at=now) for pk, ext in attach.items()],
                ["external_id", "updated_at"],
            )
    except IntegrityError:
        return
    for pk, ext in attach.items():
        by_external[ext] = pk
        has_external.add(pk)


def _orders_insert(rows: list[tuple[OrderRow, int]], source: str) -> list[tuple[str, int]]:
    """INSERT … ON CONFLICT (external_id) DO NOTHING; returns (external id, contact id) of
    each order inserted. Rows go in external-id order, so concurrent imports lock in the same order."""
    if not rows:
        return []
    rows = sorted(rows, key=lambda item: item[0].external_id)
    now = clock.now()
    if connection.vendor != "postgresql":
        fields = ["external_id", "contact", "total", "currency", "ordered_at", "source"]
        fields += ["status", "refunded_total", "attributes", "created_at"]
        fixed = [source, OrderStatus.PLACED, Decimal("0"), {}, now]
        values = [
            [r.external_id, cid, r.total, r.currency, r.ordered_at, *fixed] for r, cid in rows
        ]
        return [
            (external_id, contact_id)
            for start in range(0, len(values), 500)
            for external_id, contact_id in insert_ignore_returning(
                Order,
                fields,
                values[start : start + 500],
                conflict=["external_id"],
                returning=["external_id", "contact"],
            )
        ]
    qn = connection.ops.quote_name
    sql = (
        f"INSERT INTO {qn(Order._meta.db_table)} (external_id, contact_id, total, currency, "
        "ordered_at, source, status, refunded_total, attributes, created_at) "
        "SELECT v.external_id, v.contact_id, v.total, v.currency, v.ordered_at, "
        "%s, %s, 0, '{}'::jsonb, %s "
        "FROM unnest(%s::text[], %s::bigint[], %s::numeric[], %s::text[], %s::timestamptz[]) "
        "AS v(external_id, contact_id, total, currency, ordered_at) "
        "ON CONFLICT (external_id) DO NOTHING RETURNING external_id, contact_id"
    )
    params = [
        source,
        OrderStatus.PLACED,
        now,
        [r.external_id for r, _ in rows],
        [cid for _, cid in rows],
        [r.total for r, _ in rows],
        [r.currency for r, _ in rows],
        [r.ordered_at for r, _ in rows],
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def count_lines(path: Path) -> int:
    """Data rows, for the progress line (physical lines less the header: a quoted field
    with a line break makes it an overestimate, which only slows the percentage)."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return max(0, lines + (last != b"\n") - 1)
