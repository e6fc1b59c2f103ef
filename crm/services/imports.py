"""CSV imports of contacts and products: chunked and set-based (a few queries per 1,000
rows, not per row), with a per-row error report and progress callbacks. Used by the admin
(through an ImportJob and a Celery task) and by `manage.py import_contacts`."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.db import transaction

from crm import clock
from crm.db import insert_ignore_returning
from crm.errors import KeepersError
from crm.models import ConsentRecord, ConsentStatus, Contact, ImportJob, Stage
from crm.services.changes import changes_mark_contacts
from crm.services.contacts import (
    PROFILE_FIELDS,
    _contacts_by_identity,
    _contacts_created,
    contact_fields_clean,
    tags_ensure,
)
from crm.services.products import product_item_parse, products_upsert

CHUNK = 1000
MAX_REPORTED_ERRORS = 1000
CONTACT_COLUMNS = {"email", "external_id", "tags", "consent", *PROFILE_FIELDS} - {"attributes"}

_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n"}
Progress = Callable[["ImportReport"], None]


@dataclass
class ImportReport:
    total_rows: int = 0
    processed_rows: int = 0
    created: int = 0
    updated: int = 0
    errors: list[dict] = field(default_factory=list)
    error_count: int = 0

    def error(self, row: int, field_name: str | None, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"row": row, "field": field_name, "message": message})


def csv_rows(stream: Iterable[str]) -> Iterator[tuple[int, dict]]:
    """(line number, row) pairs; line 1 is the header, so data starts at 2."""
    reader = csv.DictReader(stream)
    if not reader.fieldnames:
        raise KeepersError("The file is empty or has no header row.", field="file")
    reader.fieldnames = [name.strip().lower().lstrip("\ufeff") for name in reader.fieldnames]
    for row in reader:
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}


def count_rows(path_or_text: str | bytes) -> int:
    return max(0, sum(1 for _ in csv.reader(io.StringIO(_text(path_or_text)))) - 1)


def _text(data: str | bytes) -> str:
    return data.decode("utf-8-sig") if isinstance(data, bytes) else data


def contacts_import(
    text: str | bytes, *, source: str = "import", progress: Progress | None = None
) -> ImportReport:
    """Import contacts from CSV text. Columns: email and/or external_id, then any of
    first_name, last_name, phone, locale, timezone, birthday, tags (comma-separated),
    source, channel, consent (granted/withdrawn); every other column becomes an attribute.
    Existing contacts (by external_id, then email) are updated; bad rows are reported by
    line and field and the others imported."""
    text = _text(text)
    report = ImportReport(total_rows=count_rows(text))
    chunk: list[tuple[int, dict]] = []
    for line, row in csv_rows(io.StringIO(text)):
        chunk.append((line, row))
        if len(chunk) >= CHUNK:
            _contacts_chunk(chunk, report, source)
            chunk = []
            if progress:
                progress(report)
    if chunk:
        _contacts_chunk(chunk, report, source)
    if progress:
        progress(report)
    return report


def _contact_row_clean(row: dict) -> tuple[dict, list[str], str | None]:
    fields = {
        k: v for k, v in row.items() if k in CONTACT_COLUMNS - {"tags", "consent"} and v != ""
    }
    attributes = {k: v for k, v in row.items() if k not in CONTACT_COLUMNS and v != ""}
    if attributes:
        fields["attributes"] = attributes
    cleaned = contact_fields_clean(fields)
    tags = contact_fields_clean({"tags": row.get("tags", "")})["tags"]
    consent = row.get("consent", "").lower() or None
    if consent and consent not in ConsentStatus.values:
        raise KeepersError("consent must be 'granted' or 'withdrawn'.", field="consent")
    if not cleaned.get("email") and not cleaned.get("external_id"):
        raise KeepersError("Each row needs an email or an external_id.", field="email")
    return cleaned, tags, consent


# A parsed row of the contacts CSV: (line, cleaned fields, tag names, consent status or
# None), keyed by the identity it names: ("x", external id) or ("e", email).
_Row = tuple[int, dict, list[str], str | None]


@transaction.atomic
def _contacts_chunk(chunk: list[tuple[int, dict]], report: ImportReport, source: str) -> None:
    """One chunk of the CSV in a handful of statements: parse, update the contacts that
    exist, insert the new ones, then their tags and consent."""
    rows = _rows_parse(chunk, report)
    if not rows:
        return
    now = clock.now()
    existing_ids = _existing_update(rows, report, now)
    new_ids = _new_insert(rows, set(existing_ids), report, source, now)
    ids = {**existing_ids, **new_ids}
    _tags_attach(rows, ids)
    _consent_record(rows, ids, source, now)


def _rows_parse(chunk: list[tuple[int, dict]], report: ImportReport) -> dict[tuple, _Row]:
    """The valid rows by identity (a later row for the same person wins); each bad row is
    reported with its line and field."""
    rows: dict[tuple, _Row] = {}
    for line, raw in chunk:
        report.processed_rows += 1
        try:
            cleaned, tags, consent = _contact_row_clean(raw)
        except KeepersError as error:
            report.error(line, error.field, error.message)
            continue
        key = (
            ("x", cleaned["external_id"]) if cleaned.get("external_id") else ("e", cleaned["email"])
        )
        rows[key] = (line, cleaned, tags, consent)
    return rows


def _existing_update(
    rows: dict[tuple, _Row], report: ImportReport, now: dt.datetime
) -> dict[tuple, int]:
    """Update the rows' contacts that exist (matched on external id, then email): load
    once, change in memory, one bulk UPDATE. An identity the contact already has another
    value for is kept. Returns their ids by row key."""
    by_email, by_external = _contacts_by_identity(
        {r[1].get("email") for r in rows.values() if r[1].get("email")},
        {r[1].get("external_id") for r in rows.values() if r[1].get("external_id")},
    )
    existing_ids: dict[tuple, int] = {}
    for key, (_line, cleaned, _t, _c) in rows.items():
        pk = by_external.get(cleaned.get("external_id")) or by_email.get(cleaned.get("email"))
        if pk:
            existing_ids[key] = pk
    contacts = Contact.objects.in_bulk(set(existing_ids.values()))
    changed: set[str] = set()
    for key, pk in existing_ids.items():
        contact = contacts[pk]
        cleaned = dict(rows[key][1])
        if contact.external_id and cleaned.get("external_id") not in (None, contact.external_id):
            cleaned.pop("external_id")
        if (
            contact.email
            and cleaned.get("email")
            and cleaned["email"] != contact.email
            and key[0] == "e"
        ):
            cleaned.pop("email")
        if "attributes" in cleaned:
            cleaned["attributes"] = {**contact.attributes, **cleaned["attributes"]}
        for name, value in cleaned.items():
            setattr(contact, name, value)
            changed.add(name)
        contact.updated_at = now
    if contacts:
        Contact.objects.bulk_update(
            contacts.values(), sorted(changed | {"updated_at"}), batch_size=500
        )
    report.updated += len(existing_ids)
    changes_mark_contacts(existing_ids.values(), "profile")
    return existing_ids


def _new_insert(
    rows: dict[tuple, _Row],
    existing: set[tuple],
    report: ImportReport,
    source: str,
    now: dt.datetime,
) -> dict[tuple, int]:
    """Insert the other rows' contacts in one INSERT; a row that collides with another
    contact's email or external id is reported. Returns the new ids by row key."""
    fields = [
        "email",
        "external_id",
        "source",
        "created_at",
        "updated_at",
        "stage_changed_at",
        "stage",
        *PROFILE_FIELDS,
    ]
    fields = list(dict.fromkeys(fields))
    new_keys = [k for k in rows if k not in existing]
    values = []
    for key in new_keys:
        cleaned = rows[key][1]
        base = {
            "source": source,
            "created_at": now,
            "updated_at": now,
            "stage_changed_at": now,
            "stage": Stage.SUBSCRIBER,
            "attributes": {},
            "birthday": None,
        }
        base.update(cleaned)
        values.append(
            [base.get(f, "") if f not in ("email", "external_id") else base.get(f) for f in fields]
        )
    inserted = insert_ignore_returning(
        Contact, fields, values, conflict=None, returning=["id", "email", "external_id"]
    )
    new_by_identity = {}
    for pk, email, external_id in inserted:
        new_by_identity[("x", external_id) if external_id else ("e", email)] = pk
    for key in new_keys:
        if key not in new_by_identity:
            report.error(
                rows[key][0], "email", "Another contact already has this email or external_id."
            )
    report.created += len(new_by_identity)
    _contacts_created(
        [
            Contact(pk=pk, source=source, stage=Stage.SUBSCRIBER, created_at=now)
            for pk in new_by_identity.values()
        ],
        reason="imported",
    )
    return new_by_identity


def _tags_attach(rows: dict[tuple, _Row], ids: dict[tuple, int]) -> None:
    tag_names = {t for key in ids for t in rows[key][2]}
    if not tag_names:
        return
    tag_ids = {t.name: t.pk for t in tags_ensure(tag_names)}
    through = Contact.tags.through
    changes_mark_contacts(ids.values(), "tag")
    through.objects.bulk_create(
        [through(contact_id=ids[key], tag_id=tag_ids[t]) for key in ids for t in rows[key][2]],
        ignore_conflicts=True,
    )


def _consent_record(
    rows: dict[tuple, _Row], ids: dict[tuple, int], source: str, now: dt.datetime
) -> None:
    changes_mark_contacts([ids[key] for key in ids if rows[key][3]], "consent")
    ConsentRecord.objects.bulk_create(
        [
            ConsentRecord(
                contact_id=ids[key],
                status=rows[key][3],
                channel="email",
                topic="all",
                source=f"{source} (line {rows[key][0]})",
                recorded_at=now,
            )
            for key in ids
            if rows[key][3]
        ]
    )


def products_import(text: str | bytes, *, progress: Progress | None = None) -> ImportReport:
    """Catalog feed as CSV: product_id, name, url, image_url, price, currency, category,
    in_stock (true/false), replenishable (true/false)."""
    text = _text(text)
    report = ImportReport(total_rows=count_rows(text))
    batch: list[dict] = []
    for line, row in csv_rows(io.StringIO(text)):
        report.processed_rows += 1
        try:
            for flag in ("in_stock", "replenishable"):
                value = row.get(flag, "").lower()
                if value in _TRUE:
                    row[flag] = True
                elif value in _FALSE:
                    row[flag] = False
            batch.append(product_item_parse({k: v for k, v in row.items() if v != ""}))
        except KeepersError as error:
            report.error(line, error.field, error.message)
        if len(batch) >= CHUNK:
            created, updated = products_upsert(batch)
            report.created, report.updated = report.created + created, report.updated + updated
            batch = []
            if progress:
                progress(report)
    if batch:
        created, updated = products_upsert(batch)
        report.created, report.updated = report.created + created, report.updated + updated
    if progress:
        progress(report)
    return report


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Run a queued import job, saving progress after each chunk. Running a job that is no
    longer queued does nothing (a redelivered task is harmless)."""
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING, started_at=clock.now()
    )
    if not claimed:
        return None
    job = ImportJob.objects.get(pk=job_id)

    def save_progress(report: ImportReport) -> None:
        ImportJob.objects.filter(pk=job_id).update(
            total_rows=report.total_rows,
            processed_rows=report.processed_rows,
            created_count=report.created,
            updated_count=report.updated,
            error_count=report.error_count,
            errors=report.errors,
        )

    try:
        with job.file.open("rb") as handle:
            data = handle.read()
        run = contacts_import if job.kind == ImportJob.Kind.CONTACTS else products_import
        report = (
            run(data, progress=save_progress)
            if run is products_import
            else run(data, progress=save_progress, source="import")
        )
        save_progress(report)
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportJob.Status.DONE,
            finished_at=clock.now(),
            message=f"{report.created} created, {report.updated} updated, "
            f"{report.error_count} rows with errors.",
        )
    except (KeepersError, UnicodeDecodeError, csv.Error) as error:
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportJob.Status.FAILED,
            finished_at=clock.now(),
            message=getattr(error, "message", None) or f"The file could not be read: {error}",
        )
    job.refresh_from_db()
    return job
