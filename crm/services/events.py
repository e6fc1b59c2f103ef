"""Event ingestion: validated items, stored once per (source, message_id), in one INSERT
per batch. Ingestion records what happened and announces it; reactions (stages, segments,
campaign triggers) follow from the bus and never slow the insert down."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction

from crm import bus, clock
from crm.db import insert_ignore_returning
from crm.errors import KeepersError
from crm.models import Event
from crm.services.changes import changes_mark
from crm.services.contacts import Identity, email_normalize, identities_resolve
from crm.services.lifecycle import lifecycle_recompute
from crm.services.parsing import parse_datetime, parse_object, parse_str, reject_unknown

# Events other apps record that crm itself reads (metrics' CSAT and NPS): the survey
# answer's properties are survey (name), kind ("csat" | "nps"), score, category and ref.
SURVEY_ANSWERED = "Survey Answered"
SURVEY_SOURCE = "survey"  # the source campaigns' survey pages record them under

EVENT_FIELDS = {
    "name",
    "email",
    "external_id",
    "anonymous_id",
    "properties",
    "occurred_at",
    "message_id",
    "source",
    "context",
}


@dataclass
class EventIn:
    name: str
    identity: Identity
    properties: dict
    occurred_at: datetime
    message_id: str
    source: str = "api"
    context: dict = field(default_factory=dict)


def event_item_parse(raw: object, *, prefix: str = "", now: datetime | None = None) -> EventIn:
    if not isinstance(raw, dict):
        raise KeepersError("Each event must be a JSON object.", field=prefix.rstrip(".") or None)
    reject_unknown(raw, EVENT_FIELDS, prefix)
    email = raw.get("email")
    identity = Identity(
        email=email_normalize(email, field_name=f"{prefix}email") if email else None,
        external_id=parse_str(raw.get("external_id"), f"{prefix}external_id") or None,
        anonymous_id=parse_str(raw.get("anonymous_id"), f"{prefix}anonymous_id") or None,
    )
    if not (identity.email or identity.external_id or identity.anonymous_id):
        raise KeepersError(
            "Say who the event is about: email, external_id or anonymous_id.",
            field=f"{prefix}email",
            code="required",
        )
    return EventIn(
        name=parse_str(raw.get("name"), f"{prefix}name", max_length=200, required=True),
        identity=identity,
        properties=parse_object(raw.get("properties"), f"{prefix}properties"),
        context=parse_object(raw.get("context"), f"{prefix}context"),
        occurred_at=parse_datetime(
            raw.get("occurred_at"), f"{prefix}occurred_at", default=now or clock.now()
        ),
        message_id=parse_str(raw.get("message_id"), f"{prefix}message_id") or str(uuid.uuid4()),
        source=parse_str(raw.get("source"), f"{prefix}source", max_length=100) or "api",
    )


@transaction.atomic
def events_ingest(events: list[EventIn], *, source: str = "api") -> list[tuple[str, int | None]]:
    """Store parsed events. Returns per item ("created", id) or ("duplicate", None) when
    the same (source, message_id) was stored before, in this batch or an earlier one."""
    if not events:
        return []
    contact_ids = identities_resolve([e.identity for e in events], source=source)
    return events_record(events, contact_ids)


def events_record(
    events: list[EventIn], contact_ids: list[int | None], *, announce: bool = True
) -> list[tuple[str, int | None]]:
    """Store events whose contacts are already known (`contact_ids`, one per event), in one
    INSERT … ON CONFLICT (source, message_id) DO NOTHING; what crm records itself (an
    order's "Order Completed") comes in here. `announce=False` stores history without
    telling the bus (the events are still marked as changes for segments)."""
    if not events:
        return []
    now = clock.now()
    fields = [
        "contact",
        "anonymous_id",
        "name",
        "properties",
        "context",
        "occurred_at",
        "received_at",
        "source",
        "message_id",
    ]
    rows, seen = [], set()
    for event, contact_id in zip(events, contact_ids, strict=True):
        key = (event.source, event.message_id)
        if key in seen:
            continue
        seen.add(key)
        rows.append(
            [
                contact_id,
                event.identity.anonymous_id or "",
                event.name,
                event.properties,
                event.context,
                event.occurred_at,
                now,
                event.source,
                event.message_id,
            ]
        )
    inserted = {(src, mid): pk for pk, src, mid in _events_insert(fields, rows, now)}
    results: list[tuple[str, int | None]] = []
    announced = []
    engaged: set[int] = set()
    for event, contact_id in zip(events, contact_ids, strict=True):
        pk = inserted.pop((event.source, event.message_id), None)
        if pk is None:
            results.append(("duplicate", None))
            continue
        results.append(("created", pk))
        announced.append(
            bus.EventIngested(
                event_id=pk, contact_id=contact_id, name=event.name, occurred_at=event.occurred_at
            )
        )
        if contact_id and event.name in settings.KEEPERS_ENGAGEMENT_EVENTS:
            engaged.add(contact_id)
    changes_mark((m.contact_id, f"event:{m.name}") for m in announced if m.contact_id)
    if engaged:
        lifecycle_recompute(contact_ids=engaged, reason="engaged with email")
    if announce:
        bus.publish_many(announced)
    return results


def _events_insert(fields: list[str], rows: list[list], now: datetime) -> list[tuple]:
    """INSERT … ON CONFLICT (source, message_id) DO NOTHING RETURNING id, source,
    message_id. Ids follow the order the events were received in (a journey counts an
    event at its trigger's very time as after it when it was recorded after it: a higher
    id), while the rows are inserted in key order, so concurrent batches take their locks
    alike. On PostgreSQL the rows travel as one JSON document read by jsonb_to_recordset:
    psycopg's client-side binding of a multi-row VALUES (thousands of placeholders, each
    JSON value quoted in Python) cost more than the insert itself — an order import spent
    two thirds of its time there."""
    if connection.vendor != "postgresql":
        return insert_ignore_returning(  # SQLite keeps the rows' order
            Event,
            fields,
            rows,
            conflict=["source", "message_id"],
            returning=["id", "source", "message_id"],
        )
    records = [
        {
            "position": position,
            "contact_id": row[0],
            "anonymous_id": row[1],
            "name": row[2],
            "properties": row[3],
            "context": row[4],
            "occurred_at": row[5].isoformat(),
            "source": row[7],
            "message_id": row[8],
        }
        for position, row in enumerate(rows)
    ]
    qn = connection.ops.quote_name
    table = Event._meta.db_table
    sql = (
        "WITH received AS MATERIALIZED (SELECT nextval(pg_get_serial_sequence(%s, 'id')) AS id, "
        "r.* FROM (SELECT * FROM jsonb_to_recordset(%s::jsonb) AS j(position int, "
        "contact_id bigint, anonymous_id text, name text, properties jsonb, context jsonb, "
        "occurred_at timestamptz, source text, message_id text) ORDER BY position) AS r) "
        f"INSERT INTO {qn(table)} (id, contact_id, anonymous_id, name, properties, context, "
        "occurred_at, received_at, source, message_id) "
        "SELECT id, contact_id, anonymous_id, name, properties, context, occurred_at, %s, "
        "source, message_id FROM received ORDER BY source, message_id "
        "ON CONFLICT (source, message_id) DO NOTHING RETURNING id, source, message_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [table, json.dumps(records, cls=DjangoJSONEncoder), now])
        return cursor.fetchall()
