"""Broadcasts: one template to a segment or a topic's subscribers, at a time in the shop's
zone or at the same local time for each contact, exactly once per recipient.

    schedule ──► (first wave due) start: freeze the audience into BroadcastRecipient rows
                 (one INSERT … SELECT), each with its send_at, A/B variant or "held"
    every tick:  due recipients ──► broadcast_recipients_send (batches, SKIP LOCKED):
                 checks (suppression, consent, topic, send policy) → render → Message
                 (queued) → on commit, the same messages_send as campaigns
                 A/B: after the wait, the winner is picked and the held rest released
                 nothing left to hand out ──► sent (a recurring one schedules its next)

Exactly once: a recipient row moves from pending to queued in the transaction that creates
its Message (unique idempotency key), under a row lock taken with SKIP LOCKED; sending
claims each message before the ESP sees it. Pause and cancel take the broadcast's row lock,
which every sending batch holds in share mode, so no batch is half-way when they act."""

from __future__ import annotations

import copy
import datetime as dt
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from campaigns.models import Broadcast, BroadcastRecipient, EmailTemplate, Message
from campaigns.services.messages import message_build
from campaigns.services.policy import SendPolicy
from campaigns.services.rendering import RenderError, email_render
from campaigns.services.sending import Addressee, skip_reasons
from campaigns.tasks import broadcast_recipients_send_task, messages_send_task
from crm import clock
from crm.db import bulk_update_rows
from crm.errors import KeepersError
from crm.models import Contact, Order
from crm.selectors import consent_status_subquery
from crm.services.parsing import check_year
from crm.services.recommendations import Recommender

Status = Broadcast.Status
RecipientStatus = BroadcastRecipient.Status
# the earliest wall clock on Earth: a local-time broadcast starts when its time comes there
EARLIEST_ZONE = dt.timezone(dt.timedelta(hours=14))


# ------------------------------------------------------------------------------------------
# Audience
# ------------------------------------------------------------------------------------------
def broadcast_topic_slug(broadcast: Broadcast) -> str:
    topic = broadcast.topic or broadcast.template.topic
    return topic.slug if topic else ""


def template_for_variant(broadcast: Broadcast, variant: str) -> EmailTemplate:
    """The template as this broadcast sends it to A/B variant `variant` ("a", "b", or ""
    outside the test): variant B is the template with the broadcast's second subject
    (an unsaved copy)."""
    if variant == "b" and broadcast.subject_b:
        template_b = copy.copy(broadcast.template)
        template_b.subject = broadcast.subject_b
        return template_b
    return broadcast.template


def broadcast_audience(broadcast: Broadcast) -> QuerySet[Contact]:
    """Who would get it if it started now: the segment's current members, or the contacts
    subscribed to the topic (marketing consent granted and the topic not refused). Send-time
    checks (suppression, consent, the send policy) still apply to each."""
    contacts = Contact.objects.exclude(email__isnull=True).exclude(email="")
    if broadcast.segment_id:
        return contacts.filter(
            memberships__segment_id=broadcast.segment_id, memberships__exited_at__isnull=True
        )
    if broadcast.topic_id:
        return contacts.annotate(
            _all=Coalesce(consent_status_subquery("email"), Value("none")),
            _topic=Coalesce(
                consent_status_subquery("email", broadcast.topic.slug),
                # a topic that is not opt-in by default needs the contact's own yes
                Value("granted" if broadcast.topic.default_opt_in else "none"),
            ),
        ).filter(_all="granted", _topic="granted")
    return contacts.none()


def broadcast_preview(broadcast: Broadcast, *, sample: int = 10) -> dict:
    """What staff confirm: how many, a sample, and how the local-time waves spread (none,
    and no start, for a date that cannot be sent on: broadcast_date_problem)."""
    audience = broadcast_audience(broadcast)
    sendable = not broadcast_date_problem(broadcast)
    zones = Counter(
        dict(
            audience.values("timezone")
            .annotate(n=Count("id"))
            .order_by()
            .values_list("timezone", "n")
        )
    )
    waves = []
    if broadcast.timing == Broadcast.Timing.LOCAL and sendable:
        moments = Counter()
        for zone, n in zones.items():
            moments[_moment(broadcast, zone)] += n
        waves = [{"at": at, "contacts": n} for at, n in sorted(moments.items())]
    return {
        "count": sum(zones.values()),
        "sample": _sample(audience, sum(zones.values()), sample),
        "waves": waves,
        "starts_at": broadcast_starts_at(broadcast) if sendable else None,
    }


def _sample(audience: QuerySet[Contact], count: int, size: int) -> list[dict]:
    """A run of `size` contacts from a random place in the audience (ORDER BY random()
    would sort the whole audience on every page view)."""
    start = random.randint(0, max(count - size, 0))
    rows = audience.order_by("pk").values("id", "email", "first_name")
    return list(rows[start : start + size])


# ------------------------------------------------------------------------------------------
# Time
# ------------------------------------------------------------------------------------------
def _moment(broadcast: Broadcast, zone: str) -> dt.datetime:
    """The broadcast's date and time on the wall clock of this zone (for a shop-time
    broadcast, the shop's zone whatever the contact's). A time a DST change skips is
    taken as the same time on the earlier offset, as zoneinfo does."""
    if broadcast.timing == Broadcast.Timing.SHOP:
        zone = settings.KEEPERS_SHOP_TIME_ZONE
    local = dt.datetime.combine(
        broadcast.send_date, broadcast.send_time, tzinfo=clock.zone_named(zone)
    )
    return local.astimezone(dt.UTC)


def broadcast_starts_at(broadcast: Broadcast) -> dt.datetime:
    if broadcast.timing == Broadcast.Timing.SHOP:
        return _moment(broadcast, "")
    return dt.datetime.combine(broadcast.send_date, broadcast.send_time, tzinfo=EARLIEST_ZONE)


# ------------------------------------------------------------------------------------------
# Staff actions
# ------------------------------------------------------------------------------------------
def broadcast_date_problem(broadcast: Broadcast) -> str:
    """Why the broadcast's date cannot be sent on ("" when it can): a row stored before
    the API's year bounds may say 0001-01-01, where times overflow."""
    try:
        check_year(broadcast.send_date, "send_date")
    except KeepersError as error:
        return error.message
    return ""


def broadcast_validate(broadcast: Broadcast) -> None:
    if broadcast.send_date is not None and (problem := broadcast_date_problem(broadcast)):
        raise KeepersError(problem, field="send_date")
    if bool(broadcast.segment_id) == bool(broadcast.topic_id):
        raise KeepersError("Choose the audience: a segment or a topic, not both.", field="segment")
    if broadcast.template.category != EmailTemplate.Category.MARKETING:
        # a one-off send to a list is marketing: consent, topic and send policy apply
        raise KeepersError("A broadcast must use a marketing template.", field="template")
    if broadcast.ab_percent:
        if not broadcast.subject_b.strip():
            raise KeepersError("An A/B test needs subject B.", field="subject_b")
        if not 2 <= broadcast.ab_percent <= 100:
            raise KeepersError(
                "The A/B sample must be 2–100 % of the audience.", field="ab_percent"
            )
    elif broadcast.subject_b.strip():
        raise KeepersError("Subject B needs an A/B sample percentage.", field="ab_percent")


def broadcast_schedule(
    *, broadcast: Broadcast, user=None, now: dt.datetime | None = None
) -> Broadcast:
    """Draft → scheduled, after validation. A broadcast whose time has passed starts at the
    next tick (staff saw the count and confirmed)."""
    now = now or clock.now()
    with transaction.atomic():
        broadcast = (
            Broadcast.objects.select_for_update().select_related("template").get(pk=broadcast.pk)
        )
        if broadcast.status != Status.DRAFT:
            raise KeepersError(
                f"Only a draft can be scheduled; this broadcast is {broadcast.get_status_display().lower()}.",
                code="conflict",
                status_code=409,
            )
        broadcast_validate(broadcast)
        if now - broadcast_starts_at(broadcast) > dt.timedelta(days=1):
            raise KeepersError(
                "The send time is more than a day in the past: pick a new date.", field="send_date"
            )
        broadcast.status = Status.SCHEDULED
        broadcast.scheduled_by = user
        broadcast.save(update_fields=["status", "scheduled_by", "updated_at"])
    return broadcast


_MOVES = {
    "pause": ({Status.SENDING, Status.SCHEDULED}, Status.PAUSED),
    "resume": ({Status.PAUSED}, None),  # back to sending, or scheduled when never started
    "cancel": ({Status.DRAFT, Status.SCHEDULED, Status.SENDING, Status.PAUSED}, Status.CANCELLED),
    "unschedule": ({Status.SCHEDULED}, Status.DRAFT),
}


_PAST = {"pause": "paused", "resume": "resumed", "cancel": "cancelled", "unschedule": "unscheduled"}


def broadcast_move(
    *, broadcast: Broadcast, action: str, now: dt.datetime | None = None
) -> Broadcast:
    """Pause, resume, cancel or unschedule. Takes the broadcast's row lock, so a sending
    batch is either finished (its messages queued and counted) or not begun."""
    now = now or clock.now()
    allowed, target = _MOVES[action]
    with transaction.atomic():
        broadcast = Broadcast.objects.select_for_update().get(pk=broadcast.pk)
        if broadcast.status not in allowed:
            raise KeepersError(
                f"A {broadcast.get_status_display().lower()} broadcast cannot be {_PAST[action]}.",
                code="conflict",
                status_code=409,
            )
        if action == "resume":
            target = Status.SENDING if broadcast.frozen_at else Status.SCHEDULED
        broadcast.status = target
        fields = ["status", "updated_at"]
        if action == "cancel":
            broadcast.cancelled_at = now
            fields.append("cancelled_at")
            broadcast.recipients.filter(
                status__in=[RecipientStatus.PENDING, RecipientStatus.HELD]
            ).update(status=RecipientStatus.CANCELLED, reason="broadcast cancelled")
            # queued but not claimed by a sender yet: they stay unsent
            unsent = list(
                broadcast.messages.filter(status=Message.Status.QUEUED).values_list("pk", flat=True)
            )
            Message.objects.filter(pk__in=unsent, status=Message.Status.QUEUED).update(
                status=Message.Status.SKIPPED, error="broadcast cancelled"
            )
            broadcast.recipients.filter(message_id__in=unsent).update(
                status=RecipientStatus.CANCELLED, reason="broadcast cancelled"
            )
        broadcast.save(update_fields=fields)
    return broadcast


# ------------------------------------------------------------------------------------------
# The tick
# ------------------------------------------------------------------------------------------
def broadcasts_tick(*, now: dt.datetime | None = None, batch_size: int | None = None) -> dict:
    """Start the broadcasts whose time has come, decide A/B tests, hand due recipients
    out to workers in batches, and close the broadcasts with nobody left to send to."""
    now = now or clock.now()
    batch_size = batch_size or settings.KEEPERS_ENGINE_BATCH
    started = 0
    for broadcast in Broadcast.objects.filter(status=Status.SCHEDULED):
        if broadcast_starts_at(broadcast) <= now:
            started += broadcast_start(broadcast_id=broadcast.pk, now=now)
    for broadcast in Broadcast.objects.filter(
        status=Status.SENDING, ab_percent__gt=0, ab_decided_at__isnull=True
    ):
        if broadcast.frozen_at + dt.timedelta(hours=broadcast.ab_wait_hours) <= now:
            broadcast_pick_winner(broadcast_id=broadcast.pk, now=now)
    due = list(
        BroadcastRecipient.objects.filter(
            status=RecipientStatus.PENDING, send_at__lte=now, broadcast__status=Status.SENDING
        )
        .order_by("send_at", "pk")
        .values_list("pk", flat=True)[:50_000]
    )
    for start in range(0, len(due), batch_size):
        broadcast_recipients_send_task.delay(due[start : start + batch_size])
    finished = 0
    for broadcast in Broadcast.objects.filter(
        status__in=[Status.SENDING, Status.UNCONFIRMED]
    ).exclude(recipients__status__in=[RecipientStatus.PENDING, RecipientStatus.HELD]):
        finished += broadcast_finish(broadcast_id=broadcast.pk, now=now)
    return {"started": started, "handed_out": len(due), "finished": finished}


def broadcast_start(*, broadcast_id: int, now: dt.datetime) -> int:
    """Freeze the audience: one INSERT … SELECT of recipient rows, their send times set
    per time zone (one UPDATE per zone in the audience), the A/B sample drawn by a hash of
    the contact id. Returns 1 if this call started it."""
    with transaction.atomic():
        broadcast = (
            Broadcast.objects.select_for_update(of=("self",))
            .select_related("template", "topic")
            .get(pk=broadcast_id)
        )
        if broadcast.status != Status.SCHEDULED:
            return 0
        table = connection.ops.quote_name(BroadcastRecipient._meta.db_table)
        audience_sql, params = broadcast_audience(broadcast).values("id").query.sql_with_params()
        first = _moment(broadcast, "")
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (broadcast_id, contact_id, send_at, variant, status, reason) "
                f"SELECT %s, a.id, %s, '', %s, '' FROM ({audience_sql}) a",
                [
                    broadcast.pk,
                    connection.ops.adapt_datetimefield_value(first),
                    RecipientStatus.PENDING,
                    *params,
                ],
            )
            size = cursor.rowcount
        if broadcast.timing == Broadcast.Timing.LOCAL:
            zones = (
                Contact.objects.filter(pk__in=broadcast.recipients.values("contact_id"))
                .order_by()
                .values_list("timezone", flat=True)
                .distinct()
            )
            for zone in list(zones):
                broadcast.recipients.filter(contact__timezone=zone).update(
                    send_at=_moment(broadcast, zone)
                )
        if broadcast.ab_percent:
            _draw_sample(broadcast, table)
        broadcast.status = Status.SENDING
        broadcast.audience_size = size
        broadcast.frozen_at = now
        broadcast.save(update_fields=["status", "audience_size", "frozen_at", "updated_at"])
    return 1


def _draw_sample(broadcast: Broadcast, table: str) -> None:
    """The first ab_percent of a fixed hash of (contact, broadcast) goes to the test, half
    A and half B; the rest is held for the winner. (contact_id × 7919) mod 100 visits every
    residue once per 100 consecutive ids, so the split is even and repeatable."""
    bucket = "((contact_id * 7919 + %s) %% 100)"
    salt = broadcast.pk * 104729
    p = broadcast.ab_percent
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET "
            f"variant = CASE WHEN {bucket} * 2 < %s THEN 'a' WHEN {bucket} < %s THEN 'b' ELSE '' END, "
            f"status = CASE WHEN {bucket} < %s THEN %s ELSE %s END "
            "WHERE broadcast_id = %s",
            [
                salt,
                p,
                salt,
                p,
                salt,
                p,
                RecipientStatus.PENDING,
                RecipientStatus.HELD,
                broadcast.pk,
            ],
        )


def broadcast_pick_winner(*, broadcast_id: int, now: dt.datetime) -> str:
    """Compare the variants' open (or click) rates among their sent messages; the better
    subject (A on a tie) goes to the held recipients, from now or their own send time."""
    with transaction.atomic():
        broadcast = Broadcast.objects.select_for_update().get(pk=broadcast_id)
        if broadcast.ab_decided_at or broadcast.status != Status.SENDING:
            return broadcast.ab_winner
        result = {}
        for variant in ("a", "b"):
            sent = broadcast.messages.filter(
                recipient__variant=variant, status=Message.Status.SENT
            ).aggregate(sent=Count("id"), opened=Count("opened_at"), clicked=Count("clicked_at"))
            metric = sent["opened" if broadcast.ab_metric == Broadcast.Metric.OPENS else "clicked"]
            sent["rate"] = round(metric / sent["sent"], 4) if sent["sent"] else 0.0
            result[variant] = sent
        winner = "b" if result["b"]["rate"] > result["a"]["rate"] else "a"
        broadcast.ab_winner = winner
        broadcast.ab_decided_at = now
        broadcast.ab_result = result
        broadcast.save(update_fields=["ab_winner", "ab_decided_at", "ab_result", "updated_at"])
        held = broadcast.recipients.filter(status=RecipientStatus.HELD)
        held.filter(send_at__lt=now).update(status=RecipientStatus.PENDING, send_at=now)
        held.update(status=RecipientStatus.PENDING)
    return winner


def broadcast_finish(*, broadcast_id: int, now: dt.datetime) -> int:
    """Nobody left to hand out and no message waiting to be sent or being sent: sent — or
    "unconfirmed" while any of its messages is (a crash left it; campaigns.services.recovery),
    and sent once those are confirmed or resent. A recurring broadcast schedules its next
    occurrence when it first finishes."""
    with transaction.atomic():
        broadcast = Broadcast.objects.select_for_update().get(pk=broadcast_id)
        if (
            broadcast.status not in (Status.SENDING, Status.UNCONFIRMED)
            or broadcast.recipients.filter(
                status__in=[RecipientStatus.PENDING, RecipientStatus.HELD]
            ).exists()
            or broadcast.messages.filter(
                status__in=[Message.Status.QUEUED, Message.Status.SENDING]
            ).exists()
        ):
            return 0
        unconfirmed = broadcast.messages.filter(status=Message.Status.UNCONFIRMED).exists()
        first = broadcast.status == Status.SENDING
        target = Status.UNCONFIRMED if unconfirmed else Status.SENT
        if target == broadcast.status:
            return 0
        broadcast.status = target
        if first:
            broadcast.finished_at = now
        broadcast.save(update_fields=["status", "finished_at", "updated_at"])
        if broadcast.repeat and first:
            _schedule_next(broadcast)
    return 1


def _schedule_next(broadcast: Broadcast) -> Broadcast:
    following = copy.copy(broadcast)
    following.pk = None
    following.series_id = broadcast.series_id or broadcast.pk
    following.send_date = next_date(broadcast.send_date, broadcast.repeat)
    following.status = Status.SCHEDULED
    for name in ("audience_size", "frozen_at", "finished_at", "cancelled_at", "ab_decided_at"):
        setattr(following, name, None)
    following.ab_winner = ""
    following.ab_result = {}
    following.save()
    return following


def next_date(day: dt.date, repeat: str) -> dt.date:
    if repeat == Broadcast.Repeat.WEEKLY:
        return day + dt.timedelta(days=7)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    for d in (day.day, 30, 29, 28):  # the 31st falls back to the month's last day
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------
# Sending a batch
# ------------------------------------------------------------------------------------------
def broadcast_recipients_send(*, ids: list[int], now: dt.datetime | None = None) -> dict[str, int]:
    """Queue the messages of these recipients (those still pending and due, of broadcasts
    still sending, not locked by another worker). Returns counts: queued, skipped, held."""
    now = now or clock.now()
    counts = {"queued": 0, "skipped": 0, "held": 0}
    with transaction.atomic():
        broadcasts, recipients = _batch_lock(ids, now)
        if not recipients:
            return counts
        by_broadcast: dict[int, list[BroadcastRecipient]] = defaultdict(list)
        for recipient in recipients:
            by_broadcast[recipient.broadcast_id].append(recipient)
        batch = _Batch(
            now=now,
            policy=SendPolicy({r.contact_id for r in recipients}, now),
            # read only if a template asks for {% recommendations %}
            recommender=Recommender([r.contact for r in recipients], now=now),
            counts=counts,
        )
        for broadcast_id, items in by_broadcast.items():
            _broadcast_recipients_queue(broadcasts[broadcast_id], items, batch)
        Message.objects.bulk_create(batch.messages)
        for recipient in recipients:
            if recipient.message is not None:
                recipient.message_id = recipient.message.pk
        bulk_update_rows(recipients, ["status", "reason", "send_at", "message"])
        message_ids = [m.pk for m in batch.messages]
        if message_ids:
            transaction.on_commit(lambda: _send(message_ids))
    return counts


@dataclass
class _Batch:
    """What the recipients of one batch share: the send policy's counts, the
    recommendations' reads, the messages queued so far and the counts returned."""

    now: dt.datetime
    policy: SendPolicy
    recommender: Recommender
    counts: dict[str, int]
    messages: list[Message] = field(default_factory=list)


def _batch_lock(
    ids: list[int], now: dt.datetime
) -> tuple[dict[int, Broadcast], list[BroadcastRecipient]]:
    """The batch's broadcasts still sending, held FOR SHARE (pause and cancel wait for the
    batch), and its recipients still pending and due, locked FOR UPDATE SKIP LOCKED."""
    broadcast_ids = set(
        BroadcastRecipient.objects.filter(pk__in=ids).values_list("broadcast_id", flat=True)
    )
    broadcasts = {
        b.pk: b
        for b in Broadcast.objects.select_related("template", "topic", "template__topic")
        .filter(pk__in=_share_lock(broadcast_ids))
        .filter(status=Status.SENDING)
    }
    recipients = list(
        BroadcastRecipient.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("contact")
        .filter(
            pk__in=ids,
            broadcast_id__in=list(broadcasts),
            status=RecipientStatus.PENDING,
            send_at__lte=now,
        )
        .order_by("pk")
    )
    return broadcasts, recipients


def _broadcast_recipients_queue(
    broadcast: Broadcast, items: list[BroadcastRecipient], batch: _Batch
) -> None:
    """For each recipient of one broadcast: skip (suppressed, no consent, held too long,
    the template failed), hold (the send policy's next allowed moment) or render and
    queue the message."""
    template = broadcast.template
    by_variant = {v: template_for_variant(broadcast, v) for v in ("a", "b")}
    topic = broadcast_topic_slug(broadcast)
    addressees = [
        Addressee(
            contact_id=r.contact_id,
            to_email=r.contact.email,
            category=template.category,
            topic=topic,
        )
        for r in items
    ]
    reasons = skip_reasons(addressees, key=lambda a: a.contact_id)
    marketing = template.category == EmailTemplate.Category.MARKETING
    for recipient in items:
        contact = recipient.contact
        reason = reasons.get(contact.pk)
        if reason:
            _skip(recipient, reason, batch.counts)
            continue
        if marketing and _held(recipient, broadcast, batch):
            continue
        variant = recipient.variant or broadcast.ab_winner
        try:
            rendered = email_render(
                template=by_variant.get(variant, template),
                contact=contact,
                extra={"broadcast": broadcast, "recommender": batch.recommender},
                ab_side=variant,
            )
        except RenderError as error:
            _skip(recipient, f"the template failed to render: {error}", batch.counts)
            continue
        if marketing:
            batch.policy.record(contact.pk, batch.now)
        message = message_build(
            contact=contact,
            rendered=rendered,
            template=template,
            broadcast=broadcast,
            topic=topic,
            idempotency_key=f"broadcast:{broadcast.pk}:{contact.pk}",
            now=batch.now,
        )
        batch.messages.append(message)
        recipient.message = message
        recipient.status = RecipientStatus.QUEUED
        recipient.reason = ""
        batch.counts["queued"] += 1


def _held(recipient: BroadcastRecipient, broadcast: Broadcast, batch: _Batch) -> bool:
    """The send policy holds this recipient (caps, quiet hours, frequency preference):
    until its next allowed moment, or skipped when that is beyond max_delay_hours."""
    verdict = batch.policy.check(recipient.contact, broadcast)
    if verdict.send_at <= batch.now:
        return False
    wait = verdict.send_at - batch.now
    if wait > dt.timedelta(hours=broadcast.max_delay_hours):
        _skip(
            recipient,
            f"{verdict.reason} would hold it {wait.total_seconds() / 3600:.0f} h, "
            f"more than the {broadcast.max_delay_hours} h allowed",
            batch.counts,
        )
    else:
        recipient.send_at = verdict.send_at
        recipient.reason = f"held until then: {verdict.reason}"
        batch.counts["held"] += 1
    return True


def _skip(recipient: BroadcastRecipient, reason: str, counts: dict[str, int]) -> None:
    recipient.status = RecipientStatus.SKIPPED
    recipient.reason = reason[:300]
    counts["skipped"] += 1


def _send(message_ids: list[int]) -> None:
    messages_send_task.delay(message_ids)


def _share_lock(broadcast_ids: set[int]) -> list[int]:
    """Hold these broadcasts' rows in share mode until the batch commits: pause and cancel
    (FOR UPDATE) wait for the batch, and batches do not wait for one another."""
    if not broadcast_ids:
        return []
    if connection.vendor != "postgresql":
        return list(broadcast_ids)
    table = connection.ops.quote_name(Broadcast._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE id = ANY(%s) AND status = %s ORDER BY id FOR SHARE",
            [sorted(broadcast_ids), Status.SENDING],
        )
        return [row[0] for row in cursor.fetchall()]


# ------------------------------------------------------------------------------------------
# Progress and results
# ------------------------------------------------------------------------------------------
def broadcast_stats(broadcast: Broadcast) -> dict:
    """Progress (recipients by status, skip reasons), delivery and engagement of the sent
    messages (per A/B variant too), and conversions: orders placed by a recipient within
    the attribution window after their message was sent (refunded orders left out)."""
    recipients = dict(
        broadcast.recipients.order_by()
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    progress = {status: recipients.get(status, 0) for status in RecipientStatus.values}
    progress["remaining"] = progress["pending"] + progress["held"]
    reasons = list(
        broadcast.recipients.filter(status=RecipientStatus.SKIPPED)
        .order_by()
        .values("reason")
        .annotate(n=Count("id"))
        .order_by("-n")[:20]
    )
    totals = _engagement(broadcast.messages.all())
    variants = {}
    if broadcast.ab_percent:
        for variant in ("a", "b"):
            variants[variant] = _engagement(broadcast.messages.filter(recipient__variant=variant))
    conversions = _conversions(broadcast)
    return {
        "audience": broadcast.audience_size,
        "progress": progress,
        "skipped_reasons": [{"reason": r["reason"], "count": r["n"]} for r in reasons],
        "messages": totals,
        "variants": variants,
        "ab": {
            "winner": broadcast.ab_winner,
            "decided_at": broadcast.ab_decided_at,
            "result": broadcast.ab_result,
        },
        "conversions": conversions,
    }


def _conversions(broadcast: Broadcast) -> dict:
    window = dt.timedelta(days=broadcast.attribution_days)
    touched = broadcast.messages.filter(
        status=Message.Status.SENT,
        contact=OuterRef("contact"),
        sent_at__lte=OuterRef("ordered_at"),
        sent_at__gt=OuterRef("ordered_at") - window,
    )
    first_sent = broadcast.messages.aggregate(first=Min("sent_at"))["first"]
    if first_sent is None:
        return {
            "window_days": broadcast.attribution_days,
            "orders": 0,
            "contacts": 0,
            "revenue": {},
        }
    rows = (
        Order.objects.filter(
            contact_id__in=broadcast.recipients.values("contact_id"),
            ordered_at__gte=first_sent,
            ordered_at__lt=clock.now() + window,
        )
        .filter(Exists(touched))
        .live()
        .order_by()
        .values("currency")
        .annotate(
            orders=Count("id"), contacts=Count("contact", distinct=True), revenue=Sum("total")
        )
        .order_by("currency")
    )
    return {
        "window_days": broadcast.attribution_days,
        "orders": sum(r["orders"] for r in rows),
        "contacts": sum(r["contacts"] for r in rows),
        # cents, as elsewhere in the API (the column keeps 4 places; SQLite drops zeros)
        "revenue": {r["currency"]: f"{r['revenue']:.2f}" for r in rows},
    }


def _engagement(messages: QuerySet[Message]) -> dict:
    row = messages.aggregate(
        sent=Count("id", filter=Q(status=Message.Status.SENT)),
        failed=Count("id", filter=Q(status=Message.Status.FAILED)),
        sending=Count("id", filter=Q(status=Message.Status.SENDING)),
        unconfirmed=Count("id", filter=Q(status=Message.Status.UNCONFIRMED)),
        delivered=Count("delivered_at"),
        opened=Count("opened_at"),
        clicked=Count("clicked_at"),
        bounced=Count("bounced_at"),
        complained=Count("complained_at"),
        unsubscribed=Count("unsubscribed_at"),
    )
    base = row["sent"] or 0
    for key in ("delivered", "opened", "clicked", "unsubscribed"):
        row[f"{key}_rate"] = round(row[key] / base, 4) if base else 0.0
    return row
