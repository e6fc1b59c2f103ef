"""Broadcasts: waves at each contact's local time, exactly once, through pause, resume
and cancel; send-time skips with reasons; A/B subject tests; recurrence; stats."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail

from campaigns.models import Broadcast, BroadcastRecipient, EmailTemplate, Message
from campaigns.services.broadcasts import (
    broadcast_move,
    broadcast_pick_winner,
    broadcast_preview,
    broadcast_recipients_send,
    broadcast_schedule,
    broadcast_stats,
    broadcasts_tick,
    next_date,
)
from campaigns.services.delivery import suppression_create
from crm.errors import KeepersError
from crm.models import ConsentRecord, Contact, Order, Segment, SegmentMembership, Topic
from crm.services.consent import consent_record
from tests.campaigns.conftest import shopper

pytestmark = [pytest.mark.django_db, pytest.mark.quiet_hours]

UTC = dt.UTC
ZONES = ["Asia/Tokyo", "Asia/Kolkata", "Europe/Paris", "America/New_York", "America/Los_Angeles"]
DAY = dt.date(2026, 3, 10)


def audience(n: int, zones=ZONES, *, name: str = "Everyone") -> Segment:
    """n contacts with marketing consent, spread over the zones, in a static segment."""
    at = dt.datetime(2026, 1, 1, tzinfo=UTC)
    contacts = Contact.objects.bulk_create(
        Contact(
            email=f"c{i}@example.com",
            first_name=f"C{i}",
            timezone=zones[i % len(zones)],
            created_at=at,
            updated_at=at,
        )
        for i in range(n)
    )
    ConsentRecord.objects.bulk_create(
        ConsentRecord(contact=c, status="granted", source="test", recorded_at=at) for c in contacts
    )
    segment = Segment.objects.create(name=name, kind="static")
    SegmentMembership.objects.bulk_create(
        SegmentMembership(segment=segment, contact=c, entered_at=at) for c in contacts
    )
    return segment


@pytest.fixture(autouse=True)
def shop_in_paris(settings):
    settings.KEEPERS_SHOP_TIME_ZONE = "Europe/Paris"  # shop-time 09:00 on DAY is 08:00Z


@pytest.fixture
def newsletter(db):
    topic = Topic.objects.create(slug="newsletter", name="Newsletter")
    return EmailTemplate.objects.create(
        name="newsletter",
        subject="March news, {{ first_name }}",
        html_body="<h1>What's new</h1><p>Hello {{ first_name }}</p>",
        topic=topic,
    )


@pytest.fixture
def tick(django_capture_on_commit_callbacks):
    """One beat tick at `at` (Celery is eager here: batches and sends run inline)."""

    def run(at: dt.datetime) -> dict:
        with (
            time_machine.travel(at, tick=False),
            django_capture_on_commit_callbacks(execute=True),
        ):
            return broadcasts_tick()

    return run


def local_nine(email: str) -> dt.datetime:
    zone = Contact.objects.get(email=email).timezone
    return dt.datetime.combine(DAY, dt.time(9), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def sent_at_by_email() -> dict[str, dt.datetime]:
    return dict(Message.objects.values_list("to_email", "sent_at"))


def every_half_hour(start: dt.datetime, end: dt.datetime):
    at = start
    while at <= end:
        yield at
        at += dt.timedelta(minutes=30)


def test_a_local_time_broadcast_goes_out_in_waves_at_each_contacts_nine_exactly_once(
    newsletter, tick
):
    segment = audience(10_000)
    broadcast = Broadcast.objects.create(
        name="March newsletter",
        template=newsletter,
        segment=segment,
        send_date=DAY,
        send_time=dt.time(9),
        timing=Broadcast.Timing.LOCAL,
    )
    preview = broadcast_preview(broadcast)
    assert preview["count"] == 10_000 and len(preview["sample"]) == 10
    assert [w["contacts"] for w in preview["waves"]] == [2_000] * 5
    broadcast_schedule(broadcast=broadcast, now=dt.datetime(2026, 3, 9, 12, tzinfo=UTC))

    waves = []
    for at in every_half_hour(
        dt.datetime(2026, 3, 9, 12, tzinfo=UTC), dt.datetime(2026, 3, 10, 18, tzinfo=UTC)
    ):
        before = len(mail.outbox)
        tick(at)
        if len(mail.outbox) > before:
            waves.append((at, len(mail.outbox) - before))

    # Tokyo 00:00Z, Kolkata 03:30Z, Paris 08:00Z, New York 13:00Z (DST from 8 March),
    # Los Angeles 16:00Z: one wave each, at that moment
    assert waves == [
        (dt.datetime(2026, 3, 10, 0, tzinfo=UTC), 2_000),
        (dt.datetime(2026, 3, 10, 3, 30, tzinfo=UTC), 2_000),
        (dt.datetime(2026, 3, 10, 8, tzinfo=UTC), 2_000),
        (dt.datetime(2026, 3, 10, 13, tzinfo=UTC), 2_000),
        (dt.datetime(2026, 3, 10, 16, tzinfo=UTC), 2_000),
    ]
    sent = sent_at_by_email()
    assert len(mail.outbox) == len(sent) == 10_000
    assert len({m.to[0] for m in mail.outbox}) == 10_000
    for email in ("c0@example.com", "c1@example.com", "c2@example.com", "c3@example.com"):
        assert sent[email] == local_nine(email)
    broadcast.refresh_from_db()
    assert broadcast.status == Broadcast.Status.SENT
    assert broadcast.audience_size == 10_000
    stats = broadcast_stats(broadcast)
    assert stats["progress"]["queued"] == 10_000 and stats["progress"]["remaining"] == 0
    assert stats["messages"]["sent"] == 10_000


def test_paused_and_resumed_mid_way_it_still_reaches_everyone_once(newsletter, tick):
    segment = audience(3_000, ZONES[2:])
    broadcast = Broadcast.objects.create(
        name="News",
        template=newsletter,
        segment=segment,
        send_date=DAY,
        send_time=dt.time(9),
        timing=Broadcast.Timing.LOCAL,
    )
    broadcast_schedule(broadcast=broadcast, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    tick(dt.datetime(2026, 3, 10, 8, tzinfo=UTC))  # Paris
    assert len(mail.outbox) == 1_000

    with time_machine.travel(dt.datetime(2026, 3, 10, 9, tzinfo=UTC), tick=False):
        broadcast_move(broadcast=broadcast, action="pause")
    tick(dt.datetime(2026, 3, 10, 13, tzinfo=UTC))  # New York's time passes while paused
    assert len(mail.outbox) == 1_000
    with pytest.raises(KeepersError, match="cannot be paused"):
        broadcast_move(broadcast=broadcast, action="pause")

    broadcast_move(broadcast=broadcast, action="resume")
    tick(dt.datetime(2026, 3, 10, 14, tzinfo=UTC))  # New York at once, late
    assert len(mail.outbox) == 2_000
    tick(dt.datetime(2026, 3, 10, 14, 1, tzinfo=UTC))
    assert len(mail.outbox) == 2_000
    tick(dt.datetime(2026, 3, 10, 16, tzinfo=UTC))  # Los Angeles on time
    tick(dt.datetime(2026, 3, 10, 17, tzinfo=UTC))
    assert len(mail.outbox) == 3_000
    assert len({m.to[0] for m in mail.outbox}) == 3_000
    broadcast.refresh_from_db()
    assert broadcast.status == Broadcast.Status.SENT


def test_cancelled_it_sends_no_more(newsletter, tick):
    segment = audience(300, ZONES[2:])
    broadcast = Broadcast.objects.create(
        name="News",
        template=newsletter,
        segment=segment,
        send_date=DAY,
        send_time=dt.time(9),
        timing=Broadcast.Timing.LOCAL,
    )
    broadcast_schedule(broadcast=broadcast, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    tick(dt.datetime(2026, 3, 10, 8, tzinfo=UTC))
    assert len(mail.outbox) == 100

    broadcast_move(broadcast=broadcast, action="cancel")
    for at in every_half_hour(
        dt.datetime(2026, 3, 10, 8, 30, tzinfo=UTC), dt.datetime(2026, 3, 11, 0, tzinfo=UTC)
    ):
        tick(at)

    assert len(mail.outbox) == 100
    assert BroadcastRecipient.objects.filter(status="cancelled").count() == 200
    broadcast.refresh_from_db()
    assert broadcast.status == Broadcast.Status.CANCELLED
    with pytest.raises(KeepersError):
        broadcast_move(broadcast=broadcast, action="resume")


def test_a_cancelled_broadcasts_queued_messages_stay_unsent(newsletter):
    segment = audience(20, ["Europe/Paris"])
    broadcast = Broadcast.objects.create(
        name="News", template=newsletter, segment=segment, send_date=DAY, send_time=dt.time(9)
    )
    broadcast_schedule(broadcast=broadcast, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    at = dt.datetime(2026, 3, 10, 8, tzinfo=UTC)
    with time_machine.travel(at, tick=False):
        broadcasts_tick()  # eager, but on-commit sends are not run here: messages stay queued
    assert Message.objects.filter(status="queued").count() == 20

    broadcast_move(broadcast=broadcast, action="cancel")

    assert Message.objects.filter(status="skipped", error="broadcast cancelled").count() == 20
    assert mail.outbox == []
    assert set(broadcast.recipients.values_list("status", flat=True)) == {"cancelled"}
    assert broadcast_stats(broadcast)["progress"]["cancelled"] == 20


def test_unsubscribed_suppressed_and_topic_opted_out_contacts_are_skipped_with_the_reason(
    newsletter, tick
):
    segment = audience(5, ["Europe/Paris"])
    c0, c1, c2, c3, c4 = Contact.objects.order_by("pk")
    consent_record(contact=c1, status="withdrawn", source="test")
    suppression_create(email=c2.email, reason="hard_bounce")
    consent_record(contact=c3, status="withdrawn", topic="newsletter", source="test")
    broadcast = Broadcast.objects.create(
        name="News", template=newsletter, segment=segment, send_date=DAY, send_time=dt.time(9)
    )
    broadcast_schedule(broadcast=broadcast, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    tick(dt.datetime(2026, 3, 10, 7, 55, tzinfo=UTC))  # frozen: 08:00Z is due next tick
    consent_record(contact=c4, status="withdrawn", source="test")  # after freezing

    tick(dt.datetime(2026, 3, 10, 8, tzinfo=UTC))

    assert [m.to for m in mail.outbox] == [[c0.email]]
    reasons = dict(broadcast.recipients.values_list("contact_id", "reason"))
    assert reasons == {
        c0.pk: "",
        c1.pk: "no marketing consent",
        c2.pk: "suppressed: hard bounce",
        c3.pk: "unsubscribed from the topic 'newsletter'",
        c4.pk: "no marketing consent",
    }
    stats = broadcast_stats(broadcast)
    assert stats["progress"]["skipped"] == 4
    assert {"reason": "no marketing consent", "count": 2} in stats["skipped_reasons"]


def test_a_topic_audience_is_its_subscribers(newsletter):
    topic = newsletter.topic
    ada, bo, cy = shopper("ada@example.com"), shopper("bo@example.com"), shopper("cy@example.com")
    Contact.objects.create(
        email="nc@example.com", created_at=dt.datetime.now(UTC), updated_at=dt.datetime.now(UTC)
    )
    consent_record(contact=bo, status="withdrawn", topic="newsletter", source="test")
    consent_record(contact=cy, status="withdrawn", source="test")
    broadcast = Broadcast(
        name="N", template=newsletter, topic=topic, send_date=DAY, send_time=dt.time(9)
    )

    preview = broadcast_preview(broadcast)

    assert preview["count"] == 1
    assert [s["email"] for s in preview["sample"]] == [ada.email]


def test_a_retried_batch_sends_nothing_twice(newsletter, django_capture_on_commit_callbacks):
    segment = audience(50, ["Europe/Paris"])
    broadcast = Broadcast.objects.create(
        name="News", template=newsletter, segment=segment, send_date=DAY, send_time=dt.time(9)
    )
    broadcast_schedule(broadcast=broadcast, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    at = dt.datetime(2026, 3, 10, 8, tzinfo=UTC)
    with time_machine.travel(at, tick=False):
        broadcasts_tick()
        ids = list(broadcast.recipients.values_list("pk", flat=True))
        with django_capture_on_commit_callbacks(execute=True):
            first = broadcast_recipients_send(ids=ids)
            again = broadcast_recipients_send(ids=ids)

    assert first == {"queued": 0, "skipped": 0, "held": 0}  # the tick's batch already did
    assert again == first
    assert Message.objects.count() == 50


def test_the_send_policy_holds_a_capped_contact_until_the_first_allowed_moment(
    newsletter, tick, settings
):
    settings.KEEPERS_CAP_24H = 1
    segment = audience(2, ["Europe/Paris"])
    capped, free = Contact.objects.order_by("pk")
    Message.objects.create(
        contact=capped,
        category="marketing",
        idempotency_key="earlier",
        to_email=capped.email,
        status="sent",
        created_at=dt.datetime(2026, 3, 10, 6, tzinfo=UTC),
    )
    broadcast = Broadcast.objects.create(
        name="News",
        template=newsletter,
        segment=segment,
        send_date=DAY,
        send_time=dt.time(9),
        max_delay_hours=48,
    )
    broadcast_schedule(broadcast=broadcast, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    tick(dt.datetime(2026, 3, 10, 8, tzinfo=UTC))
    assert [m.to for m in mail.outbox] == [[free.email]]
    held = broadcast.recipients.get(contact=capped)
    assert held.status == "pending"
    assert held.send_at == dt.datetime(
        2026, 3, 11, 7, tzinfo=UTC
    )  # cap free at 06:00Z, quiet hours end at 08:00 Paris
    assert held.reason.startswith("held until then: ")

    tick(dt.datetime(2026, 3, 11, 6, tzinfo=UTC))
    assert len(mail.outbox) == 1
    tick(dt.datetime(2026, 3, 11, 7, tzinfo=UTC))
    assert len(mail.outbox) == 2


def test_an_ab_subject_test_sends_the_winner_to_the_rest(newsletter, tick):
    segment = audience(200, ["Europe/Paris"])
    broadcast = Broadcast.objects.create(
        name="News",
        template=newsletter,
        segment=segment,
        send_date=DAY,
        send_time=dt.time(9),
        subject_b="Only for you, {{ first_name }}",
        ab_percent=20,
        ab_metric="opens",
        ab_wait_hours=4,
    )
    broadcast_schedule(broadcast=broadcast, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    tick(dt.datetime(2026, 3, 10, 8, tzinfo=UTC))

    variants = dict(
        broadcast.recipients.values("variant")
        .annotate(n=models_count())
        .values_list("variant", "n")
    )
    assert variants == {"a": 20, "b": 20, "": 160}
    assert len(mail.outbox) == 40
    subjects = sorted({m.subject.split(",")[0] for m in mail.outbox})
    assert subjects == ["March news", "Only for you"]
    # B is opened more
    Message.objects.filter(recipient__variant="b").update(
        opened_at=dt.datetime(2026, 3, 10, 9, tzinfo=UTC)
    )
    Message.objects.filter(
        recipient__variant="a",
        pk__in=Message.objects.filter(recipient__variant="a").values("pk")[:5],
    ).update(opened_at=dt.datetime(2026, 3, 10, 9, tzinfo=UTC))

    tick(dt.datetime(2026, 3, 10, 11, tzinfo=UTC))  # before the decision: nothing more
    assert len(mail.outbox) == 40
    tick(dt.datetime(2026, 3, 10, 12, tzinfo=UTC))
    broadcast.refresh_from_db()
    assert broadcast.ab_winner == "b"
    assert broadcast.ab_result["b"]["rate"] == 1.0 and broadcast.ab_result["a"]["rate"] == 0.25
    tick(dt.datetime(2026, 3, 10, 12, 1, tzinfo=UTC))
    assert len(mail.outbox) == 200
    rest = [m.subject for m in mail.outbox[40:]]
    assert all(s.startswith("Only for you") for s in rest)
    assert (
        broadcast_pick_winner(broadcast_id=broadcast.pk, now=dt.datetime(2026, 3, 11, tzinfo=UTC))
        == "b"
    )


def models_count():
    from django.db.models import Count

    return Count("id")


def test_a_weekly_broadcast_schedules_its_next_occurrence(newsletter, tick):
    segment = audience(3, ["Europe/Paris"])
    broadcast = Broadcast.objects.create(
        name="Weekly picks",
        template=newsletter,
        segment=segment,
        send_date=DAY,
        send_time=dt.time(9),
        repeat="weekly",
    )
    broadcast_schedule(broadcast=broadcast, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    tick(dt.datetime(2026, 3, 10, 8, tzinfo=UTC))
    tick(dt.datetime(2026, 3, 10, 8, 1, tzinfo=UTC))

    following = Broadcast.objects.get(series=broadcast)
    assert following.send_date == dt.date(2026, 3, 17)
    assert following.status == Broadcast.Status.SCHEDULED
    tick(dt.datetime(2026, 3, 17, 8, tzinfo=UTC))
    assert len(mail.outbox) == 6
    assert next_date(dt.date(2026, 1, 31), "monthly") == dt.date(2026, 2, 28)
    assert next_date(dt.date(2026, 12, 15), "monthly") == dt.date(2027, 1, 15)


def test_bad_broadcasts_are_refused_with_the_field_named(newsletter):
    segment = audience(1, ["Europe/Paris"])
    both = Broadcast.objects.create(
        name="x",
        template=newsletter,
        segment=segment,
        topic=newsletter.topic,
        send_date=DAY,
        send_time=dt.time(9),
    )
    with pytest.raises(KeepersError) as error:
        broadcast_schedule(broadcast=both, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    assert error.value.field == "segment"
    ab = Broadcast.objects.create(
        name="y",
        template=newsletter,
        segment=segment,
        ab_percent=10,
        send_date=DAY,
        send_time=dt.time(9),
    )
    with pytest.raises(KeepersError) as error:
        broadcast_schedule(broadcast=ab, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    assert error.value.field == "subject_b"
    receipt = EmailTemplate.objects.create(
        name="receipt", subject="Receipt", html_body="<p>x</p>", category="transactional"
    )
    transactional = Broadcast.objects.create(
        name="t", template=receipt, segment=segment, send_date=DAY, send_time=dt.time(9)
    )
    with pytest.raises(KeepersError) as error:
        broadcast_schedule(broadcast=transactional, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    assert error.value.field == "template"
    late = Broadcast.objects.create(
        name="z", template=newsletter, segment=segment, send_date=DAY, send_time=dt.time(9)
    )
    with pytest.raises(KeepersError) as error:
        broadcast_schedule(broadcast=late, now=dt.datetime(2026, 3, 20, tzinfo=UTC))
    assert error.value.field == "send_date"
    broadcast_schedule(broadcast=late, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    with pytest.raises(KeepersError) as error:
        broadcast_schedule(broadcast=late, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    assert error.value.status_code == 409


def test_stats_count_orders_within_the_attribution_window(newsletter, tick):
    segment = audience(3, ["Europe/Paris"])
    buyer, late, _ = Contact.objects.order_by("pk")
    broadcast = Broadcast.objects.create(
        name="News", template=newsletter, segment=segment, send_date=DAY, send_time=dt.time(9)
    )
    broadcast_schedule(broadcast=broadcast, now=dt.datetime(2026, 3, 9, tzinfo=UTC))
    tick(dt.datetime(2026, 3, 10, 8, tzinfo=UTC))
    for contact, when, ref in [
        (buyer, dt.datetime(2026, 3, 11, tzinfo=UTC), "o1"),
        (late, dt.datetime(2026, 3, 20, tzinfo=UTC), "o2"),
        (buyer, dt.datetime(2026, 3, 9, tzinfo=UTC), "o0"),  # before the send
    ]:
        Order.objects.create(
            external_id=ref, contact=contact, total="40.00", currency="EUR", ordered_at=when
        )

    conversions = broadcast_stats(broadcast)["conversions"]

    assert conversions == {
        "window_days": 5,
        "orders": 1,
        "contacts": 1,
        "revenue": {"EUR": "40.00"},
    }
