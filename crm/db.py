"""Database helpers the ORM does not offer: a multi-row INSERT … ON CONFLICT DO NOTHING
RETURNING, so a batch learns which rows it created and which were already there in one
statement (PostgreSQL, and SQLite ≥ 3.35), and pk-ordered row locks."""

from __future__ import annotations

import time
from collections.abc import Sequence

from django.db import OperationalError, connection, models
from django.db.models import Q

from .models import Contact


def insert_ignore_returning(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    conflict: Sequence[str] | None,
    returning: Sequence[str],
    lock_order: Sequence[str] | None = None,
) -> list[tuple]:
    """Insert `rows` (values in `fields` order); skip rows that hit the unique `conflict`
    columns; return the `returning` columns of the rows actually inserted. With `conflict=None` any unique
    constraint (including expression indexes) makes a row a conflict."""
    if not rows:
        return []
    # Concurrent batches that touch the same keys must take their row locks in the same
    # order, or two of them can deadlock waiting for each other's rows: sort by the keys.
    # SQLite locks the whole database, so rows keep their order there (and their ids).
    order = [fields.index(name) for name in (lock_order or conflict or ())]
    if order and connection.vendor == "postgresql":
        rows = sorted(
            rows, key=lambda row: tuple("" if row[i] is None else str(row[i]) for i in order)
        )
    meta = model._meta
    qn = connection.ops.quote_name
    model_fields = [meta.get_field(name) for name in fields]
    columns = ", ".join(qn(f.column) for f in model_fields)
    placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params: list[object] = []
    for row in rows:
        for field, value in zip(model_fields, row, strict=True):
            params.append(field.get_db_prep_save(value, connection))
    target = (
        "(" + ", ".join(qn(meta.get_field(n).column) for n in conflict) + ")" if conflict else ""
    )
    returning_cols = ", ".join(qn(meta.get_field(n).column) for n in returning)
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES "
        + ", ".join([placeholder] * len(rows))
        + f" ON CONFLICT {target} DO NOTHING RETURNING {returning_cols}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def lock_contacts(where: Q) -> list[int]:
    """Lock the contact rows matching `where` in primary-key order (FOR NO KEY UPDATE, so
    inserts that reference the contacts are not blocked). Every path that changes a
    contact's stage takes these locks first, in the same order, so concurrent writers
    cannot deadlock."""

    return list(
        Contact.objects.select_for_update(no_key=True)
        .filter(where)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def db_datetime(value):
    """A datetime as this database wants it in raw SQL (SQLite stores text in Django's own
    format; comparing with another format would compare strings wrongly)."""
    return connection.ops.adapt_datetimefield_value(value)


def json_text_sql(column: str, key: str) -> str:
    """SQL for the text of `column`'s top-level JSON key `key` (a number as its digits),
    NULL when absent or JSON null: ->> on PostgreSQL, json_extract elsewhere. `key` is
    code's, never input."""
    assert key.isidentifier(), key
    if connection.vendor == "postgresql":
        return f"({column} ->> '{key}')"
    return f"CAST(json_extract({column}, '$.{key}') AS TEXT)"


def retry_on_conflict(work, *, attempts: int = 3):
    """Run `work()` (which opens its own transaction) again when PostgreSQL chose it as a
    deadlock victim or refused it for serialization: both mean "nothing was written, try
    again", never a 500 for the integrator."""

    for attempt in range(attempts):
        try:
            return work()
        except OperationalError as error:
            cause = type(error.__cause__).__name__
            if cause not in ("DeadlockDetected", "SerializationFailure") or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def bulk_update_rows(objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Write these fields of these saved objects back in one statement. On PostgreSQL:
    UPDATE … FROM unnest(one array per column), several times cheaper than Django's
    bulk_update (which builds a CASE per column per row); elsewhere bulk_update."""
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objs, list(fields), batch_size=500)
        return
    qn = connection.ops.quote_name
    meta = model._meta
    pk = meta.pk
    columns, arrays, params = [], [], []
    for name in [pk.name, *fields]:
        field = meta.get_field(name)
        db_type = field.db_type(connection) if not field.is_relation else "bigint"
        if db_type.startswith(("varchar", "char")):
            db_type = "text"
        elif db_type.startswith("jsonb"):
            db_type = "jsonb"
        values = [field.get_db_prep_save(getattr(o, field.attname), connection) for o in objs]
        columns.append(qn(field.column))
        arrays.append(f"%s::{db_type}[]")
        params.append(values)
    sets = ", ".join(f"{c} = v.{c}" for c in columns[1:])
    sql = (
        f"UPDATE {qn(meta.db_table)} AS t SET {sets} "
        f"FROM unnest({', '.join(arrays)}) AS v({', '.join(columns)}) "
        f"WHERE t.{columns[0]} = v.{columns[0]}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
