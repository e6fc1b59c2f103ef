"""Lifecycle stages: subscriber → first_time → repeat → loyal, then at_risk and lapsed as
time passes, back to repeat on a new order; the nightly pass agrees with the per-contact
path."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from crm import bus
from crm.models import Contact, Stage, StageChange
from crm.services.contacts import Identity, contact_create
from crm.services.events import EventIn, events_ingest
from crm.services.lifecycle import contacts_with_target_stage, lifecycle_recompute_all
from crm.services.orders import OrderIn, order_refund, orders_place
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def place(
    email: str,
    external_id: str,
    total: str = "40.00",
    at: datetime | None = None,
    currency: str = "USD",
) -> None:
    orders_place(
        [
            OrderIn(
                external_id=external_id,
                identity=Identity(email=email),
                total=Decimal(total),
                currency=currency,
                ordered_at=at or datetime.now(UTC),
                lines=[],
                attributes={},
            )
        ]
    )


def stage_of(email: str) -> str:
    return Contact.objects.get(email=email).stage


def test_the_whole_journey_with_time_moving(settings):
    settings.KEEPERS_LOYAL_SPEND_12M = Decimal("10000")  # loyalty by order count here
    with time_machine.travel(T0, tick=False) as clock:
        # given a new subscriber
        contact_create(email="ann@example.com")
        assert stage_of("ann@example.com") == Stage.SUBSCRIBER
        # when she orders, orders again, and twice more
        place("ann@example.com", "o1")
        assert stage_of("ann@example.com") == Stage.FIRST_TIME
        clock.shift(timedelta(days=20))
        place("ann@example.com", "o2")
        assert stage_of("ann@example.com") == Stage.REPEAT
        clock.shift(timedelta(days=20))
        place("ann@example.com", "o3")
        assert stage_of("ann@example.com") == Stage.REPEAT
        place("ann@example.com", "o4")
        assert stage_of("ann@example.com") == Stage.LOYAL
        # then time passes without orders: the nightly pass moves her on
        clock.shift(timedelta(days=91))
        lifecycle_recompute_all()
        assert stage_of("ann@example.com") == Stage.AT_RISK
        clock.shift(timedelta(days=90))
        lifecycle_recompute_all()
        assert stage_of("ann@example.com") == Stage.LAPSED
        # and a new order brings her back (the old orders are out of the 12-month window
        # only for spend; she has 5 orders, so loyal again by count)
        place("ann@example.com", "o5")
        assert stage_of("ann@example.com") == Stage.LOYAL

    changes = list(
        StageChange.objects.filter(contact__email="ann@example.com")
        .order_by("at", "id")
        .values_list("from_stage", "to_stage")
    )
    assert changes == [
        ("", "subscriber"),
        ("subscriber", "first_time"),
        ("first_time", "repeat"),
        ("repeat", "loyal"),
        ("loyal", "at_risk"),
        ("at_risk", "lapsed"),
        ("lapsed", "loyal"),
    ]


def test_lapsed_customer_back_to_repeat_on_new_order():
    with time_machine.travel(T0, tick=False) as clock:
        place("bo@example.com", "b1")
        place("bo@example.com", "b2")
        clock.shift(timedelta(days=200))
        lifecycle_recompute_all()
        assert stage_of("bo@example.com") == Stage.LAPSED
        place("bo@example.com", "b3")
        assert stage_of("bo@example.com") == Stage.REPEAT


def test_loyal_by_spend_in_twelve_months(settings):
    settings.KEEPERS_LOYAL_SPEND_12M = Decimal("500")
    with time_machine.travel(T0, tick=False):
        place("cy@example.com", "c1", total="300")
        place("cy@example.com", "c2", total="250")
        assert stage_of("cy@example.com") == Stage.LOYAL


def test_spend_in_other_currencies_does_not_count_toward_the_threshold(settings):
    settings.KEEPERS_LOYAL_SPEND_12M = Decimal("500")
    with time_machine.travel(T0, tick=False):
        place("jp@example.com", "j1", total="30000", currency="JPY")
        place("jp@example.com", "j2", total="30000", currency="JPY")
        assert stage_of("jp@example.com") == Stage.REPEAT


def test_a_fully_refunded_order_does_not_count():
    with time_machine.travel(T0, tick=False):
        place("di@example.com", "d1")
        place("di@example.com", "d2")
        assert stage_of("di@example.com") == Stage.REPEAT
        order_refund(order_external_id="d2", reason="damaged")
        assert stage_of("di@example.com") == Stage.FIRST_TIME
        change = StageChange.objects.filter(contact__email="di@example.com").first()
        assert (change.from_stage, change.to_stage, change.reason) == (
            "repeat",
            "first_time",
            "order refunded",
        )


def test_unengaged_subscriber_and_back_when_they_open(settings):
    with time_machine.travel(T0, tick=False) as clock:
        contact_create(email="ed@example.com")
        clock.shift(timedelta(days=settings.KEEPERS_UNENGAGED_DAYS + 1))
        lifecycle_recompute_all()
        assert stage_of("ed@example.com") == Stage.UNENGAGED
        events_ingest(
            [
                EventIn(
                    name="Email Opened",
                    identity=Identity(email="ed@example.com"),
                    properties={},
                    occurred_at=datetime.now(UTC),
                    message_id="open-1",
                )
            ]
        )
        assert stage_of("ed@example.com") == Stage.SUBSCRIBER


def test_stage_changes_are_published_on_the_bus_after_commit(django_capture_on_commit_callbacks):
    seen = []
    handler = seen.append
    bus.subscribe(bus.StageChanged, handler)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            place("fa@example.com", "f1")
    finally:
        bus.unsubscribe(bus.StageChanged, handler)
    assert [(m.from_stage, m.to_stage) for m in seen] == [("subscriber", "first_time")]


def test_nightly_recompute_agrees_with_the_per_contact_path():
    """Build a mixed population with orders over time, recorded through the per-contact
    path; then wipe stages and let the nightly pass recompute: it must land on the same
    stages, and a second run must change nothing."""
    with time_machine.travel(T0, tick=False) as clock:
        for n in range(30):
            email = f"p{n}@example.com"
            contact_create(email=email)
            for k in range(n % 6):
                place(
                    email,
                    f"p{n}-{k}",
                    total=str(50 + 40 * k),
                    at=datetime.now(UTC) - timedelta(days=k * 30 + n * 7),
                )
        ContactFactory.create_batch(3)
        clock.shift(timedelta(days=5))
        # the per-contact path, for each contact
        per_contact = {
            c.pk: c.target_stage
            for c in contacts_with_target_stage(Contact.objects.all(), datetime.now(UTC))
        }
        Contact.objects.update(stage=Stage.SUBSCRIBER)
        lifecycle_recompute_all()
        nightly = dict(Contact.objects.values_list("pk", "stage"))
        assert nightly == per_contact
        assert set(nightly.values()) >= {
            "subscriber",
            "first_time",
            "repeat",
            "loyal",
            "at_risk",
            "lapsed",
        }
        assert lifecycle_recompute_all() == 0
