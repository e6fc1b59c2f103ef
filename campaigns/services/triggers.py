"""Triggers: enrollment follows ingestion in batches, off the ingestion path.

A pass every few seconds reads what happened since its cursors — new events, segment
entries and exits, stage changes — and, per active campaign, enrolls the matching
contacts with one INSERT … SELECT (entry segment, re-entry policy and holdout decided in
SQL; the unique (campaign, trigger_key) makes a repeated pass harmless). The same pass
wakes enrollments waiting for an event and ends enrollments whose goal was reached.
Cursors trail the newest rows by a few seconds, so a row from a transaction still in
flight is not skipped."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, Max, Min, OuterRef, Q, Subquery

from campaigns.matching import CART_KEYS, event_matches, wanted_value
from campaigns.models import (
    Campaign,
    CampaignVersion,
    Conversion,
    Enrollment,
    Message,
    TriggerCursor,
)
from campaigns.services.engine import enrollments_wake
from campaigns.tasks import enrollments_advance_task
from crm import clock
from crm.birthdays import celebrated_on, local_dates
from crm.db import db_datetime, json_text_sql
from crm.errors import KeepersError
from crm.models import (
    ConsentRecord,
    ConsentStatus,
    Contact,
    Event,
    Order,
    SegmentMembership,
    StageChange,
)
from crm.services.products import BACK_IN_STOCK_REQUESTED, PRODUCT_EVENTS, RESTOCKED

CHUNK = 10_000
LAG = dt.timedelta(seconds=3)
INTEREST_EVENTS = ("Product Viewed", "Product Added")
# A scan takes `now` and returns the ids of the enrollments it created. Other apps add
# theirs with scan_register (loyalty: tier changes every pass, expiring balances hourly).
Scan = Callable[[dt.datetime], list[int]]
ScanEvery = Literal["pass", "hour"]
SCANS: dict[ScanEvery, list[Scan]] = {"pass": [], "hour": []}
HOLDOUT_SQL = "((({contact}) * 2654435761 + %s * 40503) %% 100) < %s"


def scan_register(scan: Scan, *, every: ScanEvery) -> None:
    """Run `scan` on every trigger pass (every few seconds, for rows read with a cursor)
    or every hour (for what a date or a balance decides). Registering twice is harmless."""
    if every not in SCANS:
        raise ValueError(f"every is one of {', '.join(SCANS)}")
    if scan not in SCANS[every]:
        SCANS[every].append(scan)


def campaigns_live(trigger_type: str, now: dt.datetime) -> list[Campaign]:
    """The active, published campaigns with this trigger type whose dates include `now`."""
    return [
        c
        for c in Campaign.objects.filter(
            status=Campaign.Status.ACTIVE,
            published_version__isnull=False,
            trigger__type=trigger_type,
        ).select_related("published_version")
        if (c.starts_at is None or c.starts_at <= now) and (c.ends_at is None or now <= c.ends_at)
    ]


def _enroll_sql(
    campaign: Campaign,
    *,
    source_sql: str,
    source_params: list,
    contact_col: str,
    key_sql: str,
    event_col: str | None,
    now: dt.datetime,
) -> list[int]:
    """INSERT … SELECT enrollments from `source_sql` (rows with contact_col, key and maybe
    an event id), applying entry segment, re-entry policy and holdout. Returns new ids."""
    table = connection.ops.quote_name(Enrollment._meta.db_table)
    first_step = campaign.published_version.steps[0]["id"]
    where, params = [], []
    if campaign.entry_segment_id:
        where.append(
            f"EXISTS (SELECT 1 FROM {SegmentMembership._meta.db_table} m WHERE "
            f"m.segment_id = %s AND m.contact_id = src.{contact_col} AND m.exited_at IS NULL)"
        )
        params.append(campaign.entry_segment_id)
    if campaign.reentry == Campaign.Reentry.ONCE:
        where.append(
            f"NOT EXISTS (SELECT 1 FROM {table} x WHERE x.campaign_id = %s "
            f"AND x.contact_id = src.{contact_col})"
        )
        params.append(campaign.pk)
    elif campaign.reentry == Campaign.Reentry.ONCE_PER_N_DAYS:
        where.append(
            f"NOT EXISTS (SELECT 1 FROM {table} x WHERE x.campaign_id = %s "
            f"AND x.contact_id = src.{contact_col} AND x.entered_at > %s)"
        )
        params += [campaign.pk, db_datetime(now - dt.timedelta(days=campaign.reentry_days))]
    holdout = HOLDOUT_SQL.format(contact=f"src.{contact_col}")
    if event_col:  # the event's time and cart (its cart_id, else checkout_id, else order_id)
        event_join = f" LEFT JOIN {Event._meta.db_table} ev ON ev.id = src.{event_col}"
        keys = ", ".join(f"NULLIF({json_text_sql('ev.properties', k)}, '')" for k in CART_KEYS)
        trigger_at, cart_key = "COALESCE(ev.occurred_at, %s)", f"COALESCE({keys}, '')"
        # due from the trigger's moment (never later than now), so a first wait_for_event
        # counts from there too
        due = "CASE WHEN ev.occurred_at < %s THEN ev.occurred_at ELSE %s END"
    else:
        event_join, trigger_at, cart_key, due = "", "%s", "''", "%s"
    sql = (
        f"INSERT INTO {table} (campaign_id, version_id, contact_id, status, current_step, next_run_at, "
        "entered_at, trigger_at, cart_key, holdout, trigger_key, trigger_event_id, state, "
        "exit_reason, waiting_for) "
        f"SELECT %s, %s, src.{contact_col}, 'active', %s, {due}, %s, {trigger_at}, "
        f"SUBSTR({cart_key}, 1, 255), {holdout}, {key_sql}, "
        f"{'src.' + event_col if event_col else 'NULL'}, '{{}}', '', '' "
        f"FROM ({source_sql}) src{event_join}"
        + (" WHERE " + " AND ".join(where) if where else " WHERE 1 = 1")
        + " ON CONFLICT (campaign_id, trigger_key) DO NOTHING RETURNING id"
    )
    all_params = [
        campaign.pk,
        campaign.published_version_id,
        first_step,
        *[db_datetime(now)] * due.count("%s"),
        db_datetime(now),
        db_datetime(now),
        campaign.pk,
        campaign.holdout_percent,
        *source_params,
        *params,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, all_params)
        return [row[0] for row in cursor.fetchall()]


def enrollments_from_rows(
    campaign: Campaign, rows, *, key_prefix: str, now: dt.datetime, with_event: bool = False
) -> list[int]:
    """Enrol the contacts of `rows` (a queryset with id and contact_id), keyed
    '<prefix><row id>', under the campaign's entry rules and one-per-contact policy, in
    one INSERT … SELECT. With `with_event`, the row ids are Event ids and become the
    enrolments' trigger events. Returns the new enrolments' ids."""
    rows = _one_per_contact(campaign, rows, "contact_id")
    sql, params = rows.values("id", "contact_id").query.sql_with_params()
    return _enroll_sql(
        campaign,
        source_sql=sql,
        source_params=list(params),
        contact_col="contact_id",
        key_sql=f"'{key_prefix}' || src.id",
        event_col="id" if with_event else None,
        now=now,
    )


def _one_per_contact(campaign: Campaign, queryset, contact_field: str):
    """Under a once / once-per-N-days policy, only each contact's first row counts."""
    if campaign.reentry == Campaign.Reentry.ALWAYS:
        return queryset
    firsts = queryset.order_by().values(contact_field).annotate(first=Min("pk")).values("first")
    return queryset.model.objects.filter(pk__in=firsts)


def cursors_ensure(now: dt.datetime | None = None) -> None:
    """Start the trigger cursors at "now" if they do not exist yet (called when a campaign
    is published): campaigns react to what happens from then on, not to history."""
    now = now or clock.now()
    for name, model in (
        ("events", Event),
        ("product_events", Event),
        ("segment_entries", SegmentMembership),
        ("stage_changes", StageChange),
        ("consents", ConsentRecord),
    ):
        if not TriggerCursor.objects.filter(name=name).exists():
            TriggerCursor.objects.get_or_create(
                name=name, defaults={"last_id": model.objects.aggregate(m=Max("pk"))["m"] or 0}
            )
    TriggerCursor.objects.get_or_create(
        name="segment_exits", defaults={"last_id": int(now.timestamp() * 1e6)}
    )


@dataclass
class CursorWindow:
    """The id range (lo, hi] a scan reads next from its cursor's table, with the cursor
    row locked until the transaction ends; advance() moves the cursor past it."""

    cursor: TriggerCursor
    lo: int
    hi: int

    def advance(self) -> None:
        self.cursor.last_id = self.hi
        self.cursor.save(update_fields=["last_id", "updated_at"])


def cursor_window(name: str, model, time_field: str, now: dt.datetime) -> CursorWindow | None:
    """Lock the cursor `name` over `model` (None when another pass holds it, or when
    nothing new is old enough: rows newer than LAG may belong to a transaction still in
    flight) and find the next range to read, at most CHUNK rows. Call inside a
    transaction; a new cursor starts at the table's newest row (a new install reacts to
    what happens from now on)."""
    cursor = TriggerCursor.objects.select_for_update(skip_locked=True).filter(name=name).first()
    if cursor is None:
        if TriggerCursor.objects.filter(name=name).exists():
            return None
        start = model.objects.aggregate(m=Max("pk"))["m"] or 0  # a new install starts now
        TriggerCursor.objects.get_or_create(name=name, defaults={"last_id": start})
        cursor = TriggerCursor.objects.select_for_update(skip_locked=True).filter(name=name).first()
        if cursor is None:
            return None
    # the next CHUNK rows by id, however far apart their ids are (a range of ids would
    # stall on a gap wider than CHUNK: rolled-back inserts, deleted rows)
    next_rows = model.objects.filter(
        pk__gt=cursor.last_id, **{f"{time_field}__lte": now - LAG}
    ).order_by("pk")[:CHUNK]
    newest = model.objects.filter(pk__in=next_rows.values("pk")).aggregate(m=Max("pk"))["m"]
    hi = newest or cursor.last_id
    if hi <= cursor.last_id:
        return None
    return CursorWindow(cursor=cursor, lo=cursor.last_id, hi=hi)


@transaction.atomic
def _scan_events(now: dt.datetime) -> list[int]:
    window = cursor_window("events", Event, "received_at", now)
    if window is None:
        return []
    new: list[int] = []
    chunk = Event.objects.filter(pk__gt=window.lo, pk__lte=window.hi, contact__isnull=False)
    starters = _journey_starters(chunk)
    for campaign in campaigns_live("event", now):
        matching = starters.filter(name=campaign.trigger["name"])
        if campaign.trigger.get("include_backfill"):
            matching = chunk.filter(name=campaign.trigger["name"])
        for key, value in campaign.trigger.get("where", {}).items():
            matching = matching.filter(**{f"properties__{key}": value})
        new += enrollments_from_rows(campaign, matching, key_prefix="e", now=now, with_event=True)
    _wake_waiting(chunk, now)
    # goals before any step runs: events stored before this chunk (received out of order),
    # then this chunk's for every enrolment, the new ones included
    goals_reach(Event.objects.filter(pk__lte=window.lo), Enrollment.objects.filter(pk__in=new), now)
    goals_reach(chunk, Enrollment.objects.all(), now)
    window.advance()
    return new


def _journey_starters(chunk):
    """The events of a chunk that may start journeys: not a historic import (backfill) and
    not received long after they happened (KEEPERS_LATE_EVENT_HOURS): such events still
    count for goals, conditions and conversions, by when they occurred."""
    late = dt.timedelta(hours=settings.KEEPERS_LATE_EVENT_HOURS)
    not_backfill = Q(properties__backfill__isnull=True) | ~Q(properties__backfill=True)
    return chunk.filter(not_backfill, occurred_at__gte=F("received_at") - late)


def _wake_waiting(chunk, now: dt.datetime) -> None:
    waited = set(
        Enrollment.objects.filter(status=Enrollment.Status.ACTIVE)
        .exclude(waiting_for="")
        .values_list("waiting_for", flat=True)
        .distinct()
    )
    for name in waited:
        contacts = set(chunk.filter(name=name).values_list("contact_id", flat=True))
        if contacts:
            enrollments_wake(contact_ids=contacts, event_name=name, now=now)


def goals_reach(events, enrollments, now: dt.datetime) -> dict[str, int]:
    """The goal events among `events` (a queryset), for the enrolments among `enrollments`
    of the same contacts: each goal is its enrolment's version's. A goal event that
    occurred at or after the enrolment's trigger ends it if it is still active (the first
    one wins) and is a conversion once per enrolment and event, whether the enrolment is
    running, completed or exited, while it runs and for `attribution_days` after it ended —
    treatment and holdout alike (intent to treat). The conversion names the last message
    sent within `attribution_days` before the goal, if any. A few statements in all."""
    versions = {
        v.pk: v
        for v in CampaignVersion.objects.filter(
            campaign__status__in=[Campaign.Status.ACTIVE, Campaign.Status.PAUSED]
        )
        .exclude(goals=[])
        .select_related("campaign")
    }
    names = {goal["event"] for v in versions.values() for goal in v.goals}
    if not names:
        return {"exited": 0, "converted": 0}
    goal_events = list(
        events.filter(name__in=names, contact__isnull=False)
        .order_by("occurred_at", "pk")
        .only("id", "contact_id", "name", "occurred_at", "properties")
    )
    if not goal_events:
        return {"exited": 0, "converted": 0}
    longest = max(v.campaign.attribution_days for v in versions.values())
    earliest = goal_events[0].occurred_at
    candidates = list(
        enrollments.filter(
            contact_id__in={e.contact_id for e in goal_events},
            version_id__in=list(versions),
            trigger_at__lte=goal_events[-1].occurred_at,
        )
        .filter(
            Q(status=Enrollment.Status.ACTIVE)
            | Q(finished_at__gte=earliest - dt.timedelta(days=longest))
        )
        .select_related("trigger_event")
    )
    by_contact: dict[int, list[Enrollment]] = defaultdict(list)
    for enrollment in candidates:
        by_contact[enrollment.contact_id].append(enrollment)
    exits: dict[int, Event] = {}
    credited: list[tuple[Enrollment, Event]] = []
    for event in goal_events:
        for enrollment in by_contact.get(event.contact_id, ()):
            version = versions[enrollment.version_id]
            if not _goal_reached(version.goals, enrollment, event):
                continue
            if enrollment.status == Enrollment.Status.ACTIVE and enrollment.pk not in exits:
                exits[enrollment.pk] = event
            ends = enrollment.finished_at
            attribution = dt.timedelta(days=version.campaign.attribution_days)
            if ends is None or enrollment.pk in exits or event.occurred_at <= ends + attribution:
                credited.append((enrollment, event))
    _goal_exits(exits, now)
    return {"exited": len(exits), "converted": _conversions_record(credited, versions)}


def _goal_reached(goals: list[dict], enrollment: Enrollment, event: Event) -> bool:
    trigger = enrollment.trigger_event
    since = enrollment.trigger_at or enrollment.entered_at
    for goal in goals:
        match = goal.get("match")
        wanted = wanted_value(
            match,
            cart_key=enrollment.cart_key,
            trigger_properties=trigger.properties if trigger else None,
        )
        if event_matches(
            event,
            name=goal["event"],
            since=since,
            where=goal.get("where"),
            match=match,
            wanted=wanted,
            trigger_id=enrollment.trigger_event_id,
        ):
            return True
    return False


def _goal_exits(exits: dict[int, Event], now: dt.datetime) -> None:
    """End the enrolments still active, one UPDATE per goal event name."""
    by_name: dict[str, list[int]] = defaultdict(list)
    for pk, event in exits.items():
        by_name[event.name].append(pk)
    for name, ids in by_name.items():
        Enrollment.objects.filter(pk__in=ids, status=Enrollment.Status.ACTIVE).update(
            status=Enrollment.Status.EXITED_GOAL,
            finished_at=now,
            next_run_at=None,
            waiting_for="",
            exit_reason=f"goal: {name}",
        )


def _conversions_record(
    credited: list[tuple[Enrollment, Event]], versions: dict[int, CampaignVersion]
) -> int:
    """One Conversion per (enrolment, goal event) and per (enrolment, order), revenue from
    the order the event names (its net value). Returns how many were credited (a pair
    already recorded is left as it is)."""
    if not credited:
        return 0
    order_ids = {
        str(event.properties["order_id"])
        for _, event in credited
        if event.properties.get("order_id") is not None
    }
    orders = {o.external_id: o for o in Order.objects.filter(external_id__in=order_ids)}
    sends = defaultdict(list)
    for message in (
        Message.objects.filter(
            enrollment_id__in={e.pk for e, _ in credited}, status=Message.Status.SENT
        )
        .order_by("sent_at")
        .only("id", "enrollment_id", "sent_at")
    ):
        sends[message.enrollment_id].append(message)
    rows = []
    for enrollment, event in credited:
        campaign = versions[enrollment.version_id].campaign
        window_start = event.occurred_at - dt.timedelta(days=campaign.attribution_days)
        message = None
        if not enrollment.holdout:
            for sent in sends.get(enrollment.pk, ()):
                if window_start <= sent.sent_at <= event.occurred_at:
                    message = sent
        order = orders.get(str(event.properties.get("order_id")))
        rows.append(
            Conversion(
                campaign_id=campaign.pk,
                enrollment_id=enrollment.pk,
                event_id=event.pk,
                message=message,
                order=order,
                holdout=enrollment.holdout,
                at=event.occurred_at,
                revenue=order.net_total if order else 0,
                currency=order.currency if order else "",
            )
        )
    Conversion.objects.bulk_create(rows, ignore_conflicts=True)  # once per pair: constraints
    return len(rows)


@transaction.atomic
def _scan_product_events(now: dt.datetime) -> list[int]:
    """Fan each new product event out to the contacts its campaigns reach: those who asked
    (a request since the product's previous restock, so a request is answered once) and/or
    those who viewed or added it in the last `days` days. Keyed by (product event,
    contact): each contact once per product event."""
    window = cursor_window("product_events", Event, "received_at", now)
    if window is None:
        return []
    new: list[int] = []
    campaigns = campaigns_live("product_event", now)
    if campaigns:
        events = Event.objects.filter(
            pk__gt=window.lo, pk__lte=window.hi, contact__isnull=True, name__in=PRODUCT_EVENTS
        ).order_by("pk")
        for event in events:
            for campaign in campaigns:
                if campaign.trigger.get("event") != event.name:
                    continue
                contacts = product_event_audience(
                    event,
                    audience=campaign.trigger.get("audience", "requested"),
                    days=campaign.trigger.get("days", 30),
                )
                sql, params = contacts.query.sql_with_params()
                new += _enroll_sql(
                    campaign,
                    source_sql=f"SELECT DISTINCT q.contact_id, {int(event.pk)} AS event_id "
                    f"FROM ({sql}) q",
                    source_params=list(params),
                    contact_col="contact_id",
                    key_sql=f"'p{int(event.pk)}:' || src.contact_id",
                    event_col="event_id",
                    now=now,
                )
    window.advance()
    return new


def product_event_audience(event: Event, *, audience: str, days: int):
    """The contact ids (a values queryset) a product event reaches."""
    product_id = str(event.properties.get("product_id") or "")
    about = Q(properties__product_id=product_id)
    if product_id.isdigit():  # an integration may send ids as JSON numbers
        about |= Q(properties__product_id=int(product_id))
    rows = Event.objects.none()
    if audience in ("requested", "both"):
        requests = Event.objects.filter(
            about,
            name=BACK_IN_STOCK_REQUESTED,
            contact__isnull=False,
            occurred_at__lte=event.occurred_at,
        )
        previous = (
            Event.objects.filter(about, name=RESTOCKED, contact__isnull=True, pk__lt=event.pk)
            .order_by("-occurred_at")
            .values_list("occurred_at", flat=True)
            .first()
        )
        if previous is not None:
            requests = requests.filter(occurred_at__gt=previous)
        rows = requests
    if audience in ("interested", "both"):
        interested = Event.objects.filter(
            about,
            name__in=INTEREST_EVENTS,
            contact__isnull=False,
            occurred_at__gt=event.occurred_at - dt.timedelta(days=days),
            occurred_at__lte=event.occurred_at,
        )
        rows = interested if audience == "interested" else rows | interested
    return rows.order_by().values("contact_id")


@transaction.atomic
def _scan_entries(now: dt.datetime) -> list[int]:
    window = cursor_window("segment_entries", SegmentMembership, "entered_at", now)
    if window is None:
        return []
    new: list[int] = []
    for campaign in campaigns_live("segment_entered", now):
        rows = SegmentMembership.objects.filter(
            pk__gt=window.lo, pk__lte=window.hi, segment_id=campaign.trigger["segment"]
        )
        new += enrollments_from_rows(campaign, rows, key_prefix="s", now=now)
    exits_reach(
        "segment_entered",
        SegmentMembership.objects.filter(pk__gt=window.lo, pk__lte=window.hi),
        "entered_at",
        now,
    )
    window.advance()
    return new


@transaction.atomic
def _scan_exits(now: dt.datetime) -> list[int]:
    """Exits change rows in place, so this cursor is a time (microseconds since epoch)."""
    cursor = (
        TriggerCursor.objects.select_for_update(skip_locked=True)
        .filter(name="segment_exits")
        .first()
    )
    if cursor is None:
        if TriggerCursor.objects.filter(name="segment_exits").exists():
            return []
        TriggerCursor.objects.get_or_create(
            name="segment_exits", defaults={"last_id": int(now.timestamp() * 1e6)}
        )
        return []
    lo = dt.datetime.fromtimestamp(cursor.last_id / 1e6, tz=dt.UTC)
    hi = now - LAG
    if hi <= lo:
        return []
    new: list[int] = []
    for campaign in campaigns_live("segment_exited", now):
        rows = SegmentMembership.objects.filter(
            exited_at__gt=lo, exited_at__lte=hi, segment_id=campaign.trigger["segment"]
        )
        new += enrollments_from_rows(campaign, rows, key_prefix="x", now=now)
    exits_reach(
        "segment_exited",
        SegmentMembership.objects.filter(exited_at__gt=lo, exited_at__lte=hi),
        "exited_at",
        now,
    )
    cursor.last_id = int(hi.timestamp() * 1e6)
    cursor.save(update_fields=["last_id", "updated_at"])
    return new


@transaction.atomic
def _scan_stages(now: dt.datetime) -> list[int]:
    window = cursor_window("stage_changes", StageChange, "at", now)
    if window is None:
        return []
    new: list[int] = []
    for campaign in campaigns_live("stage_changed", now):
        rows = StageChange.objects.filter(pk__gt=window.lo, pk__lte=window.hi)
        if campaign.trigger.get("from"):
            rows = rows.filter(from_stage=campaign.trigger["from"])
        if campaign.trigger.get("to"):
            rows = rows.filter(to_stage=campaign.trigger["to"])
        new += enrollments_from_rows(campaign, rows, key_prefix="g", now=now)
    exits_reach(
        "stage_changed",
        StageChange.objects.filter(pk__gt=window.lo, pk__lte=window.hi),
        "at",
        now,
    )
    window.advance()
    return new


def exits_reach(kind: str, rows, time_field: str, now: dt.datetime) -> int:
    """End the running enrolments whose version exits on what `rows` record (segment
    memberships entered or exited, stage changes) — for the same contact, at or after the
    enrolment's trigger, matching the rule's segment or stages — without a conversion.
    One UPDATE per (version, rule). Returns how many ended."""
    versions = CampaignVersion.objects.filter(
        campaign__status__in=[Campaign.Status.ACTIVE, Campaign.Status.PAUSED]
    ).exclude(exits=[])
    ended = 0
    for version in versions:
        for rule in version.exits:
            if rule.get("type") != kind:
                continue
            matching = rows
            if kind == "stage_changed":
                if rule.get("from"):
                    matching = matching.filter(from_stage=rule["from"])
                if rule.get("to"):
                    matching = matching.filter(to_stage=rule["to"])
                label = f"stage {rule.get('from') or 'any'} → {rule.get('to') or 'any'}"
            else:
                matching = matching.filter(segment_id=rule["segment"])
                label = f"{kind.replace('_', ' ')} #{rule['segment']}"
            reached = matching.filter(
                contact_id=OuterRef("contact_id"), **{f"{time_field}__gte": OuterRef("trigger_at")}
            )
            ended += Enrollment.objects.filter(
                Exists(reached), status=Enrollment.Status.ACTIVE, version=version
            ).update(
                status=Enrollment.Status.EXITED_RULE,
                finished_at=now,
                next_run_at=None,
                waiting_for="",
                exit_reason=f"exit: {label}"[:300],
            )
    return ended


@transaction.atomic
def _scan_subscriptions(now: dt.datetime) -> list[int]:
    """Consent granted for marketing email (to everything, or to the campaign's `topic`)
    where the contact's previous record for it was not a grant: the moment someone becomes
    a subscriber — after a double opt-in's confirmation, not at the request."""
    window = cursor_window("consents", ConsentRecord, "recorded_at", now)
    if window is None:
        return []
    new: list[int] = []
    for campaign in campaigns_live("subscribed", now):
        topic = campaign.trigger.get("topic") or ConsentRecord.ALL_TOPICS
        previous = ConsentRecord.objects.filter(
            contact_id=OuterRef("contact_id"),
            channel=OuterRef("channel"),
            topic=OuterRef("topic"),
            pk__lt=OuterRef("pk"),
        ).order_by("-pk")
        rows = (
            ConsentRecord.objects.filter(
                pk__gt=window.lo,
                pk__lte=window.hi,
                channel="email",
                topic=topic,
                status=ConsentStatus.GRANTED,
            )
            .annotate(before=Subquery(previous.values("status")[:1]))
            .filter(Q(before__isnull=True) | ~Q(before=ConsentStatus.GRANTED))
        )
        new += enrollments_from_rows(campaign, rows, key_prefix="c", now=now)
    window.advance()
    return new


def triggers_scan(*, now: dt.datetime | None = None, rounds: int = 20) -> int:
    """Read everything new (up to `rounds` chunks per source) and enroll; the new
    enrollments are advanced right away. Returns how many were enrolled."""
    total = 0
    for _ in range(rounds):
        now_round = now or clock.now()
        new = (
            _scan_events(now_round)
            + _scan_product_events(now_round)
            + _scan_entries(now_round)
            + _scan_exits(now_round)
            + _scan_stages(now_round)
            + _scan_subscriptions(now_round)
        )
        for scan in SCANS["pass"]:
            new += scan(now_round)
        for start in range(0, len(new), 500):
            enrollments_advance_task.delay(new[start : start + 500])
        total += len(new)
        if not new and not _behind(now_round):
            break
    return total


def _behind(now: dt.datetime) -> bool:
    cursors = dict(TriggerCursor.objects.values_list("name", "last_id"))
    return any(
        model.objects.filter(pk__gt=cursors.get(name, 0), **{f"{field}__lte": now - LAG}).exists()
        for name, model, field in (
            ("events", Event, "received_at"),
            ("product_events", Event, "received_at"),
            ("segment_entries", SegmentMembership, "entered_at"),
            ("stage_changes", StageChange, "at"),
            ("consents", ConsentRecord, "recorded_at"),
        )
        if name in cursors
    )


def date_triggers_run(*, now: dt.datetime | None = None) -> int:
    """Birthdays, signup anniversaries and date attributes, with an offset in days, once a
    year, on the right day in each contact's own time zone; and the hourly scans other
    apps add. Run hourly."""
    now = now or clock.now()
    total = 0
    for scan in SCANS["hour"]:
        new = scan(now)
        for start in range(0, len(new), 500):
            enrollments_advance_task.delay(new[start : start + 500])
        total += len(new)
    for campaign in campaigns_live("date", now):
        field, offset = campaign.trigger["field"], campaign.trigger.get("offset_days", 0)
        with transaction.atomic():
            new: list[int] = []
            # one statement per local date (two or three at any moment), not per zone
            for local_today, zones in local_dates(now).items():
                target = local_today - dt.timedelta(days=offset)
                rows = Contact.objects.filter(zones).filter(celebrated_on(field, target))
                if field == "created_at":
                    rows = rows.filter(created_at__year__lt=target.year)
                sql, params = rows.values("id").query.sql_with_params()
                new += _enroll_sql(
                    campaign,
                    source_sql=sql,
                    source_params=list(params),
                    contact_col="id",
                    # once per contact and year: the year of their local date
                    key_sql=f"'d{local_today.year}:' || src.id",
                    event_col=None,
                    now=now,
                )
        for start in range(0, len(new), 500):
            enrollments_advance_task.delay(new[start : start + 500])
        total += len(new)
    return total


@transaction.atomic
def enrollment_start(
    *, campaign: Campaign, contact: Contact, key: str, now: dt.datetime | None = None
) -> tuple[Enrollment | None, bool]:
    """Manual or API enrollment, idempotent on `key`. Returns (enrollment, created);
    (None, False) when the entry rules say no."""
    now = now or clock.now()
    if campaign.status != Campaign.Status.ACTIVE or campaign.published_version_id is None:
        raise KeepersError("The campaign is not active.", code="campaign_inactive", status_code=409)
    existing = Enrollment.objects.filter(campaign=campaign, trigger_key=f"m:{key}").first()
    if existing:
        return existing, False
    new = _enroll_manual(campaign, contact.pk, f"m:{key}", now)
    if not new:
        return None, False
    transaction.on_commit(lambda: enrollments_advance_task.delay(new))
    return Enrollment.objects.get(pk=new[0]), True


def _enroll_manual(campaign: Campaign, contact_id: int, key: str, now: dt.datetime) -> list[int]:
    return _enroll_sql(
        campaign,
        source_sql="SELECT %s AS contact_id, %s AS trigger_key",
        source_params=[contact_id, key],
        contact_col="contact_id",
        key_sql="src.trigger_key",
        event_col=None,
        now=now,
    )


def segment_enroll(
    *, campaign: Campaign, segment_id: int, key: str, now: dt.datetime | None = None
) -> list[int]:
    """Enroll every current member of a segment (admin action), once per `key`."""
    now = now or clock.now()
    rows = SegmentMembership.objects.filter(segment_id=segment_id, exited_at__isnull=True)
    sql, params = rows.values("contact_id").query.sql_with_params()
    with transaction.atomic():
        new = _enroll_sql(
            campaign,
            source_sql=sql,
            source_params=list(params),
            contact_col="contact_id",
            key_sql=f"'{key.replace(chr(39), '')}:' || src.contact_id",
            event_col=None,
            now=now,
        )
    for start in range(0, len(new), 500):
        enrollments_advance_task.delay(new[start : start + 500])
    return new
