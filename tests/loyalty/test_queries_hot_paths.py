"""Exact query counts on the ledger's hot paths: a debit that spends 1 grant or 100, and
expiry of 1 grant or 100 (one chunk). Points are earned the way production earns them:
orders placed through crm, the loyalty subscriber of OrderPlaced running after commit;
time moves with time-machine. Counts include the SAVEPOINT / RELEASE pair of each atomic
block inside the test's transaction (BEGIN / COMMIT in production, not logged)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import factory
import pytest
import time_machine

from crm.models import Contact, Order
from crm.services.contacts import Identity
from crm.services.orders import OrderIn, orders_place
from loyalty.models import POINTS, Allocation, EarnRule, LedgerEntry
from loyalty.services.ledger import ledger_debit, ledger_expire_due
from tests.factories import ContactFactory
from tests.queries import split_inserts

pytestmark = pytest.mark.django_db

SIZES = [1, 100]
T0 = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "UTC"]
LEDGER_ENTRY_COLUMNS, ALLOCATION_COLUMNS = 15, 3


@pytest.fixture(autouse=True)
def earn_rule(db):
    return EarnRule.objects.create(currency="USD", points_per_unit=Decimal("1"), expiry_months=12)


@pytest.fixture
def place(django_capture_on_commit_callbacks):
    """Orders of 40 USD, one each, placed in one batch; points are earned after commit."""

    def orders(contacts: list[Contact], at: datetime, key: str) -> None:
        with django_capture_on_commit_callbacks(execute=True):
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

    return orders


def members(n: int) -> list[Contact]:
    return ContactFactory.create_batch(
        n, timezone=factory.Iterator(ZONES), created_at=T0, updated_at=T0
    )


# --- a debit ------------------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
def test_a_debit_takes_constant_queries_however_many_grants_it_spends(
    n, place, django_assert_num_queries
):
    with time_machine.travel(T0, tick=False) as clock:
        (ada,) = members(1)
        for i in range(n):  # an order every three days, 40 points each, kept 12 months
            clock.move_to(T0 + timedelta(days=3 * i))
            place([ada], T0 + timedelta(days=3 * i), f"o{i}")
        clock.move_to(T0 + timedelta(days=3 * n))
        grants = LedgerEntry.objects.filter(contact=ada, unit=POINTS, amount__gt=0)
        assert grants.count() == n
        # the key's earlier entry, savepoint, the spendable grants FOR UPDATE in expiry
        # order, the debit entry, one bulk INSERT of allocations, one write-back of the
        # grants' remaining, the change mark, release
        with django_assert_num_queries(8 + split_inserts(n, ALLOCATION_COLUMNS)):
            entry, created = ledger_debit(
                contact=ada, unit=POINTS, amount=40 * n, reason="Redeemed", key="redeem:all"
            )
    assert created and entry.amount == -40 * n
    assert Allocation.objects.filter(debit=entry).count() == n
    assert set(grants.values_list("remaining", flat=True)) == {Decimal("0")}


# --- expiry -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
def test_expiry_of_a_chunk_takes_constant_queries(n, place, django_assert_num_queries):
    with time_machine.travel(T0, tick=False) as clock:
        customers = members(n)
        place(customers, T0, "spring")
        assert LedgerEntry.objects.filter(type="earn").count() == n
        clock.move_to(T0 + timedelta(days=366))  # the points were good for 12 months
        # savepoint, the due grants FOR UPDATE SKIP LOCKED, one bulk INSERT of expire
        # entries (SQLite splits it under 999 parameters), one of allocations, one
        # write-back of the grants' remaining, the change marks, release; then the next
        # chunk finds none: savepoint, select, release
        with django_assert_num_queries(
            7 + split_inserts(n, LEDGER_ENTRY_COLUMNS) + split_inserts(n, ALLOCATION_COLUMNS) + 3
        ):
            expired = ledger_expire_due()
    assert expired == n
    assert LedgerEntry.objects.filter(type="expire").count() == n
    assert not LedgerEntry.objects.filter(type="earn", remaining__gt=0).exists()


# --- orders placed --------------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
def test_judging_a_batch_of_orders_takes_constant_queries(n, django_assert_num_queries):
    from loyalty.models import BonusRule, ContactTier, Tier
    from loyalty.services.orders import orders_placed

    BonusRule.objects.create(kind="first_order", points=100)
    Tier.objects.create(name="Insider", rank=1, basis="spend", threshold=Decimal("1"))
    with time_machine.travel(T0, tick=False):
        customers = members(n)
        orders_place(  # stored, not yet judged (no on-commit here)
            [
                OrderIn(
                    external_id=f"o-{c.pk}",
                    identity=Identity(email=c.email),
                    total=Decimal("40.00"),
                    currency="USD",
                    ordered_at=T0 - timedelta(days=1),
                    lines=[],
                    attributes={},
                )
                for c in customers
            ]
        )
        ids = list(Order.objects.values_list("pk", flat=True))
        # the orders' contacts; savepoint, lock the contacts, their orders; the earn
        # rules, the first-order rule, orders already judged, the tiers, tiers held, the
        # two tier aggregates, first orders, first-order bonuses given; one INSERT of the
        # entries, one of the change marks; tiers_recompute: the tiers, savepoint, lock,
        # the two aggregates, tiers held, one INSERT of tiers, one of tier changes,
        # release; the referrals of these contacts, those with a code in their traits;
        # release
        with django_assert_num_queries(27):
            counts = orders_placed(order_ids=ids)
    assert counts == {"orders": n, "earned": n, "nothing": 0, "bonuses": n}
    assert ContactTier.objects.exclude(tier=None).count() == n


# --- a reminder's `expiring` ---------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
def test_a_reminder_batch_reads_its_grants_in_two_queries(n, django_assert_num_queries):
    from campaigns.extend import Batch
    from campaigns.models import Campaign, Enrollment
    from campaigns.services.definitions import campaign_publish
    from loyalty.services.credit import credit_grant
    from loyalty.triggers import expiring_context, scan_expiring

    with time_machine.travel(T0, tick=False):
        campaign = Campaign.objects.create(
            name="Reminder",
            trigger={"type": "credit_expiring", "days": 7},
            reentry="always",
            steps=[{"id": "w", "type": "wait", "config": {"days": 1}}],
        )
        campaign_publish(campaign=campaign)
        for contact in members(n):
            credit_grant(
                contact=contact,
                amount=Decimal("5"),
                currency="EUR",
                reason="Welcome",
                key=f"w{contact.pk}",
                expires_at=T0 + timedelta(days=3),
            )
        scan_expiring(T0)
        enrollments = list(Enrollment.objects.all())
        assert len(enrollments) == n
        batch = Batch(now=T0, enrollments=enrollments, campaigns={campaign.pk: campaign})
        # the grants by id, the contacts' spendable balances of those units
        with django_assert_num_queries(2):
            context = expiring_context(enrollments, batch)
    assert len(context) == n
    assert {c["expiring"]["amount"] for c in context.values()} == {"5.00"}
