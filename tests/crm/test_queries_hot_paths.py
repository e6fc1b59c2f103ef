"""Exact query counts on the crm hot paths, for a batch of 1 and of 100 contacts: a
segment's full refresh, the incremental pass over changed contacts, and the lifecycle
recompute of a chunk.

Data arrives the way ingestion delivers it (events and orders in batches, with their
change marks), and time moves with time-machine. What the paths publish on the bus runs
after commit, which the test's transaction never reaches, so the counted block is the
path alone. Counts include the SAVEPOINT / RELEASE pair of each atomic block inside the
test's transaction (BEGIN / COMMIT in production, not logged by Django)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import factory
import pytest
import time_machine
from django.db import connection

from crm.models import Contact, ContactChange, SegmentMembership, Stage, StageChange
from crm.services.contacts import Identity
from crm.services.events import EventIn, events_ingest
from crm.services.lifecycle import lifecycle_recompute, lifecycle_recompute_all
from crm.services.orders import OrderIn, orders_place
from crm.services.segments import segment_refresh, segment_save, segments_refresh_changed
from tests.factories import ContactFactory
from tests.queries import split_inserts

pytestmark = pytest.mark.django_db

SIZES = [1, 100]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "UTC"]
STAGE_CHANGE_COLUMNS, CONTACT_CHANGE_COLUMNS = 5, 3


def people(n: int, prefix: str, joined: datetime = T0 - timedelta(days=30)) -> list[Contact]:
    """n contacts who signed up at `joined`, in five zones in turn (the first in Paris)."""
    return ContactFactory.create_batch(
        n,
        email=factory.Sequence(lambda i: f"{prefix}{i}@example.com"),
        timezone=factory.Iterator(ZONES),
        created_at=joined,
        updated_at=joined,
    )


def add_to_cart(contacts: list[Contact], at: datetime) -> None:
    events_ingest(
        [
            EventIn(
                name="Product Added",
                identity=Identity(email=c.email),
                properties={"product_id": "SKU-1", "cart_id": f"cart-{c.pk}"},
                occurred_at=at,
                message_id=f"add-{c.pk}-{at:%s}",
            )
            for c in contacts
        ]
    )


def buy(contacts: list[Contact], at: datetime, key: str = "o") -> None:
    orders_place(
        [
            OrderIn(
                external_id=f"{key}-{c.pk}",
                identity=Identity(email=c.email),
                total=Decimal("40.00"),
                currency="USD",
                ordered_at=at,
                lines=[],
                attributes={},
            )
            for c in contacts
        ]
    )


CART_ABANDONERS = {
    "all": [
        {"type": "event", "name": "Product Added", "op": "at_least", "count": 1, "days": 1},
        {"type": "order", "measure": "count", "op": "eq", "value": 0},
    ]
}


def apply_statements() -> int:
    """Insert the new members, close the leavers. On PostgreSQL the rule's members are
    first put in an analysed temporary table (drop if left over, create, primary key,
    analyse; dropped after)."""
    return 2 + (5 if connection.vendor == "postgresql" else 0)


# --- the full refresh ---------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
def test_a_full_refresh_of_a_segment_takes_constant_queries(n, django_assert_num_queries):
    with time_machine.travel(T0, tick=False) as clock:
        leaving, joining = people(n, "leaving"), people(n, "joining")
        carts = segment_save(name="Cart abandoners", rules=CART_ABANDONERS)
        add_to_cart(leaving, T0)
        segment_refresh(segment_id=carts.pk)
        assert carts.memberships.filter(exited_at__isnull=True).count() == n
        # overnight, the first cohort buys and the second fills carts
        clock.shift(timedelta(hours=15))
        buy(leaving, T0 + timedelta(hours=14))
        add_to_cart(joining, T0 + timedelta(hours=14))
        # savepoint, the segment's row lock, the members in and out, the member count,
        # whether a segment is built on this one, the size, the size and refreshed_at,
        # the day's snapshot (update_or_create: savepoint, select for update, savepoint,
        # insert, release, release), release
        with django_assert_num_queries(2 + apply_statements() + 2 + 2 + 6 + 1):
            result = segment_refresh(segment_id=carts.pk)
    assert sorted(result.entered) == sorted(c.pk for c in joining)
    assert sorted(result.exited) == sorted(c.pk for c in leaving)


# --- the incremental pass -----------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
def test_the_incremental_pass_takes_constant_queries_per_segment(n, django_assert_num_queries):
    with time_machine.travel(T0, tick=False) as clock:
        leaving, joining = people(n, "leaving"), people(n, "joining")
        carts = segment_save(name="Cart abandoners", rules=CART_ABANDONERS)
        paris = segment_save(
            name="Cart abandoners in Paris",
            rules={
                "all": [
                    {"type": "segment", "op": "member", "segment": carts.pk},
                    {"type": "field", "field": "timezone", "op": "eq", "value": "Europe/Paris"},
                ]
            },
        )
        segment_save(  # reads the profile only: nothing below concerns it
            name="Tokyo",
            rules={"type": "field", "field": "timezone", "op": "eq", "value": "Asia/Tokyo"},
        )
        add_to_cart(leaving, T0)
        segments_refresh_changed()  # the Paris segment follows within the pass
        segments_refresh_changed()  # and the segment: marks the pass wrote change nothing
        assert paris.memberships.filter(exited_at__isnull=True).count() == len(leaving[::5])
        assert not ContactChange.objects.exists()
        # one ingestion batch: the first cohort buys (order, stage and its "Order Completed"
        # event's marks), the second fills carts (event marks)
        clock.shift(timedelta(minutes=5))
        buy(leaving, T0 + timedelta(minutes=4))
        add_to_cart(joining, T0 + timedelta(minutes=4))
        marks = ContactChange.objects.count()
        assert marks == 4 * n
        # savepoint, claim the marks (DELETE … RETURNING), the active dynamic segments;
        # for each segment the marks reach, in dependency order ("Cart abandoners", then
        # "… in Paris" on its segment: marks): its row lock, the members in and out, the
        # member count and whether a segment is built on it — and for "Cart abandoners",
        # which one is, its own segment: marks (one INSERT, n in and n out); release
        per_segment = 1 + apply_statements() + 2
        segment_marks = 1 + split_inserts(2 * n, CONTACT_CHANGE_COLUMNS)
        with django_assert_num_queries(3 + per_segment + segment_marks + per_segment + 1):
            consumed = segments_refresh_changed()
    assert consumed == marks
    members = set(
        SegmentMembership.objects.filter(segment=carts, exited_at__isnull=True).values_list(
            "contact_id", flat=True
        )
    )
    assert members == {c.pk for c in joining}
    assert set(
        paris.memberships.filter(exited_at__isnull=True).values_list("contact_id", flat=True)
    ) == {c.pk for c in joining[::5]}


# --- the lifecycle recompute of a chunk ---------------------------------------------------
# savepoint, lock the chunk's contacts (FOR NO KEY UPDATE, pk order), the contacts whose
# stage differs, one bulk INSERT of StageChange rows, one UPDATE per target stage, the
# change marks, release
def chunk(changes: int, stages: int) -> int:
    return 6 + stages + split_inserts(changes, STAGE_CHANGE_COLUMNS)


@pytest.mark.parametrize("n", SIZES)
def test_a_lifecycle_chunk_takes_constant_queries(n, django_assert_num_queries):
    with time_machine.travel(T0, tick=False) as clock:
        customers = people(n, "customer")
        buy(customers, T0)
        assert set(Contact.objects.values_list("stage", flat=True)) == {Stage.FIRST_TIME}
        clock.shift(timedelta(days=91))  # no second order: at risk
        ids = [c.pk for c in customers]
        with django_assert_num_queries(chunk(n, stages=1)):
            changed = lifecycle_recompute(contact_ids=ids, reason="nightly recompute")
    assert changed == n
    assert set(Contact.objects.values_list("stage", flat=True)) == {Stage.AT_RISK}


@pytest.mark.parametrize("n", SIZES)
def test_the_nightly_pass_over_one_range_takes_constant_queries(n, django_assert_num_queries):
    with time_machine.travel(T0, tick=False) as clock:
        customers = people(n, "customer")
        buy(customers, T0)
        clock.shift(timedelta(days=91))
        # + the table's lowest and highest id, before the one pk range
        with django_assert_num_queries(1 + chunk(n, stages=1)):
            changed = lifecycle_recompute_all()
    assert changed == n


def test_a_chunk_of_many_stages_takes_one_update_per_target_stage(django_assert_num_queries):
    """The number of UPDATEs follows the stages the chunk moves to (at most the eight
    stages), never the number of contacts."""
    with time_machine.travel(T0 - timedelta(days=200), tick=False) as clock:
        # all signed up 200 days ago; the subscribers never bought nor opened an email
        joined = T0 - timedelta(days=200)
        lapsing, at_risk, repeat, subscribers = (people(25, p, joined) for p in "lars")
        buy(lapsing, T0 - timedelta(days=199))
        clock.move_to(T0 - timedelta(days=100))
        buy(at_risk, T0 - timedelta(days=99))
        clock.move_to(T0 - timedelta(days=2))
        buy(repeat, T0 - timedelta(days=2), key="first")
        buy(repeat, T0 - timedelta(days=1), key="second")
        clock.move_to(T0)
        everyone = lapsing + at_risk + repeat + subscribers
        before = StageChange.objects.count()
        # lapsed, at_risk, unengaged; the repeat customers are already where they belong
        with django_assert_num_queries(chunk(75, stages=3)):
            changed = lifecycle_recompute(contact_ids=[c.pk for c in everyone], reason="nightly")
    assert changed == 75
    assert StageChange.objects.count() == before + 75
    stages = dict(Contact.objects.values_list("email", "stage"))
    assert {stages[c.email] for c in lapsing} == {Stage.LAPSED}
    assert {stages[c.email] for c in at_risk} == {Stage.AT_RISK}
    assert {stages[c.email] for c in repeat} == {Stage.REPEAT}
    assert {stages[c.email] for c in subscribers} == {Stage.UNENGAGED}
