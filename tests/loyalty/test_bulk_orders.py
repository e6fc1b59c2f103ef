"""A bulk placement (the batch API, an import, the demo's seed) is one set-based loyalty
task per chunk of orders, not one per order, and gives every customer what the same
orders placed one by one would have: the same points per order (the tier multiplier
included), the same first-order bonuses, the same tier."""

import datetime as dt
import random
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command

from crm.models import Contact, Order
from crm.services.contacts import Identity
from crm.services.orders import OrderIn, orders_place
from loyalty import receivers
from loyalty.models import POINTS, BonusRule, ContactTier, EarnRule, LedgerEntry, Tier
from loyalty.services.ledger import ledger_sum
from loyalty.services.tiers import tiers_recompute

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)  # not a review day
DAY = dt.timedelta(days=1)

# (customer, total, currency, days ago): multipliers change between a customer's orders,
# one order is older than the points expiry, one is in a currency without a rule, one is
# free, one rounds to no points
HISTORY = [
    ("ada", "300", "USD", 200),  # Insider after it
    ("ada", "200", "USD", 100),  # VIB after it (500 spent)
    ("ada", "600", "USD", 10),  # earns at VIB's 1.25: 750; Rouge after it
    ("bo", "500", "USD", 500),  # older than the points expiry: nothing, no bonus
    ("bo", "50", "USD", 30),
    ("cy", "9000", "JPY", 40),  # no rule for yen: no points, but the first-order bonus
    ("cy", "80", "USD", 20),
    ("di", "0", "USD", 5),
    ("ed", "0.40", "USD", 50),
    ("ed", "120", "USD", 3),
    ("fa", "2000", "USD", 1),
]


@pytest.fixture(autouse=True)
def programme(settings):
    settings.KEEPERS_BASE_CURRENCY = "USD"
    settings.KEEPERS_TIER_REVIEW = "01-01"
    settings.KEEPERS_SHOP_TIME_ZONE = "UTC"
    EarnRule.objects.create(currency="USD", points_per_unit=Decimal("1"), expiry_months=12)
    BonusRule.objects.create(kind=BonusRule.Kind.FIRST_ORDER, points=100)
    for name, rank, threshold, multiplier in (
        ("Insider", 1, "1", "1"),
        ("VIB", 2, "350", "1.25"),
        ("Rouge", 3, "1000", "1.5"),
    ):
        Tier.objects.create(
            name=name,
            rank=rank,
            basis="spend",
            threshold=Decimal(threshold),
            multiplier=Decimal(multiplier),
        )
    with time_machine.travel(T0, tick=False):
        yield


@pytest.fixture
def queued(monkeypatch):
    """The loyalty tasks the bus handler queues (each run at once, as a worker would)."""
    calls: list[list[int]] = []
    task = receivers.orders_placed_task

    class Recorder:
        @staticmethod
        def delay(ids):
            calls.append(list(ids))
            return task.apply(args=[ids])

    monkeypatch.setattr(receivers, "orders_placed_task", Recorder)
    return calls


def orders_of(shop: str) -> list[OrderIn]:
    return [
        OrderIn(
            external_id=f"{shop}-{n}",
            identity=Identity(email=f"{who}@{shop}.example.com"),
            total=Decimal(total),
            currency=currency,
            ordered_at=T0 - days * DAY,
            lines=[],
            attributes={},
        )
        for n, (who, total, currency, days) in enumerate(HISTORY)
    ]


def outcome(shop: str) -> dict[str, tuple]:
    """Per customer: each order's earn entry (None without one), bonuses, balance, tier."""
    result = {}
    for contact in Contact.objects.filter(email__endswith=f"@{shop}.example.com"):
        earned = [
            LedgerEntry.objects.filter(order=order, type="earn")
            .values_list("amount", flat=True)
            .first()
            for order in Order.objects.filter(contact=contact).order_by("ordered_at")
        ]
        row = ContactTier.objects.filter(contact=contact).select_related("tier").first()
        result[contact.email.split("@")[0]] = (
            [None if amount is None else int(amount) for amount in earned],
            LedgerEntry.objects.filter(contact=contact, source_type="bonus").count(),
            int(ledger_sum(contact, POINTS)),
            row.tier.name if row and row.tier else None,
        )
    return result


def test_a_bulk_placement_gives_what_placing_the_orders_one_by_one_gives(
    queued, django_capture_on_commit_callbacks
):
    # one by one, oldest first, each processed before the next arrives (the live path)
    for order in sorted(orders_of("live"), key=lambda o: o.ordered_at):
        with django_capture_on_commit_callbacks(execute=True):
            orders_place([order])
    assert len(queued) == len(HISTORY)

    # the same history in one batch, in no particular order
    batch = orders_of("bulk")
    random.Random(7).shuffle(batch)
    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        orders_place(batch)
    assert len(queued) == 1

    live = outcome("live")
    assert outcome("bulk") == live
    assert live == {
        "ada": ([300, 200, 750], 1, 1350, "Rouge"),
        "bo": ([0, 50], 0, 50, "Insider"),
        "cy": ([None, 80], 1, 180, "Insider"),
        "di": ([0], 1, 100, None),
        "ed": ([0, 120], 1, 220, "Insider"),
        "fa": ([2000], 1, 2100, "Rouge"),
    }
    # a second run of the batch changes nothing
    before = LedgerEntry.objects.count()
    receivers.orders_placed_task.delay([o.pk for o in Order.objects.all()])
    assert LedgerEntry.objects.count() == before


def test_a_large_placement_is_one_task_per_chunk_of_orders(
    queued, django_capture_on_commit_callbacks
):
    orders = [
        OrderIn(
            external_id=f"o-{n}",
            identity=Identity(email=f"c{n}@example.com"),
            total=Decimal("40"),
            currency="USD",
            ordered_at=T0 - (n % 400) * DAY,
            lines=[],
            attributes={},
        )
        for n in range(1200)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        orders_place(orders)
    assert [len(ids) for ids in queued] == [500, 500, 200]
    # every order judged once: points, or a zero entry for those past the points expiry
    assert LedgerEntry.objects.filter(type="earn", source_type="order").count() == 1200
    assert set(
        LedgerEntry.objects.filter(source_type="order").values_list("amount", flat=True)
    ) == {Decimal("40"), Decimal("0")}


def test_the_demo_judges_every_seeded_order_in_its_install_and_queues_no_task_per_order(
    queued, django_capture_on_commit_callbacks
):
    # the seed's on-commit work runs at the end, as the worker runs its queue after the demo
    with django_capture_on_commit_callbacks(execute=True):
        call_command("demo", "--contacts", "80", stdout=None, stderr=None)
    orders = Order.objects.count()
    assert orders > 50 and len(queued) == (orders + 499) // 500  # one per batch seeded
    usd = Order.objects.filter(currency="USD")
    judged = LedgerEntry.objects.filter(type="earn", source_type="order", order__in=usd)
    assert judged.count() == usd.count()  # points, or a zero entry when too old
    assert judged.filter(amount__gt=0).exists() and judged.filter(amount=0).exists()
    assert tiers_recompute()["upgraded"] == 0  # every customer already holds their tier
    assert ContactTier.objects.exclude(tier=None).exists()
