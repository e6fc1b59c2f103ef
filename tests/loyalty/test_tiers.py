"""Tiers: rolling 12 months of points earned or spend, upgrades at once, downgrades only
at the yearly review, every change recorded once, set-based over many contacts."""

import datetime as dt
import itertools
import threading
import time
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from crm import clock
from crm.models import Contact, Order
from crm.services.orders import order_refund
from loyalty.models import POINTS, ContactTier, EarnRule, LedgerEntry, Tier, TierChange
from loyalty.services import tiers as tiers_service
from loyalty.services.ledger import ledger_grant
from loyalty.services.orders import order_earn
from loyalty.services.points import add_months, order_clawback, points_redeem_for_credit
from loyalty.services.tiers import review_day, tier_progress, tier_values, tiers_recompute
from tests.queries import split_inserts

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)  # not a review day
REVIEW = dt.datetime(2027, 1, 1, 3, tzinfo=dt.UTC)  # the first review after T0
DAY = dt.timedelta(days=1)
_numbers = itertools.count()


@pytest.fixture(autouse=True)
def program(settings):
    settings.KEEPERS_BASE_CURRENCY = "EUR"
    settings.KEEPERS_TIER_REVIEW = "01-01"
    settings.KEEPERS_SHOP_TIME_ZONE = "UTC"
    EarnRule.objects.create(currency="EUR", points_per_unit=Decimal("1"))
    EarnRule.objects.create(currency="USD", points_per_unit=Decimal("1"))
    return {
        "Insider": Tier.objects.create(
            name="Insider", rank=1, basis=Tier.Basis.POINTS, threshold=Decimal("1")
        ),
        "VIB": Tier.objects.create(
            name="VIB", rank=2, basis=Tier.Basis.SPEND, threshold=Decimal("350")
        ),
        "Rouge": Tier.objects.create(
            name="Rouge", rank=3, basis=Tier.Basis.SPEND, threshold=Decimal("1000")
        ),
    }


def person(email: str = "ada@example.com") -> Contact:
    return Contact.objects.create(email=email, created_at=T0, updated_at=T0)


def buy(contact: Contact, total: str, currency: str = "EUR") -> Order:
    """An order placed now (the moved clock), with the points it earns."""
    order = Order.objects.create(
        external_id=f"o-{next(_numbers)}",
        contact=contact,
        total=Decimal(total),
        currency=currency,
        ordered_at=clock.now(),
    )
    order_earn(order=order)
    return order


def refund(order: Order, amount: str) -> None:
    refunded, _ = order_refund(order_external_id=order.external_id, amount=Decimal(amount))
    order_clawback(refund=refunded)


def tier_of(contact: Contact) -> str | None:
    row = ContactTier.objects.select_related("tier").filter(contact=contact).first()
    return row.tier.name if row and row.tier else None


def history(contact: Contact) -> list[tuple]:
    return [
        (c.from_tier and c.from_tier.name, c.to_tier and c.to_tier.name, c.reason)
        for c in TierChange.objects.filter(contact=contact)
        .select_related("from_tier", "to_tier")
        .order_by("at", "pk")
    ]


def counts(upgraded: int = 0, downgraded: int = 0, unchanged: int = 0) -> dict:
    return {"upgraded": upgraded, "downgraded": downgraded, "unchanged": unchanged}


def test_an_order_upgrades_at_once_and_every_change_is_recorded():
    with time_machine.travel(T0, tick=False):
        ada = person()
        buy(ada, "400")

        assert tiers_recompute(contact_ids=[ada.pk]) == counts(upgraded=1)
        assert tier_of(ada) == "VIB"

    with time_machine.travel(T0 + 10 * DAY, tick=False):
        buy(ada, "700")
        assert tiers_recompute(contact_ids=[ada.pk]) == counts(upgraded=1)

    assert tier_of(ada) == "Rouge"
    assert history(ada) == [
        (None, "VIB", "upgrade: 400.00 EUR spend in 12 months"),
        ("VIB", "Rouge", "upgrade: 1,100.00 EUR spend in 12 months"),
    ]
    status = ContactTier.objects.get(contact=ada)
    assert (status.qualified_value, status.since) == (Decimal("1100.00"), T0 + 10 * DAY)


def test_a_refund_does_not_downgrade_before_the_review_and_the_review_does():
    with time_machine.travel(T0, tick=False):
        ada = person()
        order = buy(ada, "1100")
        tiers_recompute(contact_ids=[ada.pk])
        assert tier_of(ada) == "Rouge"

    with time_machine.travel(T0 + 5 * DAY, tick=False):
        refund(order, "800")
        assert tiers_recompute(contact_ids=[ada.pk]) == counts(unchanged=1)
        assert tier_of(ada) == "Rouge"
        assert ContactTier.objects.get(contact=ada).qualified_value == Decimal("300.00")
        assert tier_progress(ada)["keeps_tier"] is False

    with time_machine.travel(REVIEW - dt.timedelta(hours=4), tick=False):
        assert tiers_recompute() == counts(unchanged=1)  # the nightly pass, review eve
        assert tier_of(ada) == "Rouge"

    with time_machine.travel(REVIEW, tick=False):
        assert tiers_recompute() == counts(downgraded=1)

    # 1,100 points earned, 800 clawed back: still an Insider, no longer on spend
    assert tier_of(ada) == "Insider"
    assert history(ada)[1:] == [
        ("Rouge", "Insider", "yearly review: 300 points earned in 12 months")
    ]
    assert TierChange.objects.get(from_tier__name="Rouge").at == REVIEW


def test_the_review_day_is_in_shop_time(settings):
    settings.KEEPERS_SHOP_TIME_ZONE = "Asia/Tokyo"
    settings.KEEPERS_TIER_REVIEW = "04-01"

    assert not review_day(dt.datetime(2026, 3, 31, 14, 59, tzinfo=dt.UTC))  # 23:59 JST
    assert review_day(dt.datetime(2026, 3, 31, 15, 0, tzinfo=dt.UTC))  # 00:00 JST on 04-01
    assert not review_day(dt.datetime(2026, 4, 1, 15, 0, tzinfo=dt.UTC))

    settings.KEEPERS_TIER_REVIEW = "02-29"
    settings.KEEPERS_SHOP_TIME_ZONE = "UTC"
    assert review_day(dt.datetime(2027, 2, 28, 9, tzinfo=dt.UTC))
    assert review_day(dt.datetime(2028, 2, 29, 9, tzinfo=dt.UTC))
    assert not review_day(dt.datetime(2028, 2, 28, 9, tzinfo=dt.UTC))

    settings.KEEPERS_TIER_REVIEW = "13-01"
    with pytest.raises(ImproperlyConfigured, match="KEEPERS_TIER_REVIEW"):
        review_day(T0)


def test_points_earned_count_not_the_balance():
    with time_machine.travel(T0, tick=False):
        ada = person()
        ledger_grant(contact=ada, unit=POINTS, amount=500, reason="Welcome", key="welcome")
        tiers_recompute(contact_ids=[ada.pk])
        assert tier_of(ada) == "Insider"

    with time_machine.travel(T0 + DAY, tick=False):
        points_redeem_for_credit(contact=ada, points=500, currency="EUR", key="all")
        assert LedgerEntry.objects.filter(contact=ada, unit=POINTS).count() == 2
        assert tier_values([ada.pk], T0 + DAY)[ada.pk]["points"] == 500

    with time_machine.travel(REVIEW, tick=False):
        assert tiers_recompute() == counts(unchanged=1)
    assert tier_of(ada) == "Insider"


def test_a_clawback_counts_against_the_window_of_the_order_it_takes_back():
    with time_machine.travel(T0, tick=False):
        ada = person()
        first = buy(ada, "400")
    with time_machine.travel(add_months(T0, 11), tick=False):
        buy(ada, "100")
        refund(first, "400")  # its 400 points clawed back, 11 months later
        assert tier_values([ada.pk], add_months(T0, 11))[ada.pk]["points"] == 100

    # the first order (and its earn) left the window: its clawback no longer counts
    assert tier_values([ada.pk], add_months(T0, 12) + DAY)[ada.pk]["points"] == 100


def test_spend_is_net_in_the_base_currency_and_each_tier_on_its_own_basis():
    with time_machine.travel(T0, tick=False):
        ada = person()
        buy(ada, "2000", currency="USD")  # 2,000 points, but no EUR spend
        order = buy(ada, "500")
        refund(order, "200")
        tiers_recompute(contact_ids=[ada.pk])

        values = tier_values([ada.pk], T0)[ada.pk]
    assert values == {"points": Decimal("2300"), "spend": Decimal("300")}
    assert tier_of(ada) == "Insider"


def test_orders_older_than_12_months_drop_out():
    with time_machine.travel(T0, tick=False):
        ada = person()
        buy(ada, "400")
        tiers_recompute(contact_ids=[ada.pk])

    assert tier_values([ada.pk], add_months(T0, 12) - dt.timedelta(seconds=1))[ada.pk] == {
        "points": Decimal("400"),
        "spend": Decimal("400"),
    }
    assert tier_values([ada.pk], add_months(T0, 12))[ada.pk] == {
        "points": Decimal("0"),
        "spend": Decimal("0"),
    }

    with time_machine.travel(REVIEW, tick=False):  # still within 12 months
        assert tiers_recompute() == counts(unchanged=1)
    with time_machine.travel(add_months(T0, 13), tick=False):  # out, but no review
        assert tiers_recompute() == counts(unchanged=1)
        assert tier_of(ada) == "VIB"
    with time_machine.travel(REVIEW.replace(year=2028), tick=False):
        assert tiers_recompute() == counts(downgraded=1)

    assert tier_of(ada) is None
    assert history(ada) == [
        (None, "VIB", "upgrade: 400.00 EUR spend in 12 months"),
        ("VIB", None, "yearly review: 0.00 EUR spend in 12 months"),
    ]


def test_tier_progress_shows_what_is_missing_for_the_next_tier():
    with time_machine.travel(T0, tick=False):
        ada, bea = person(), person("bea@example.com")
        assert tier_progress(ada) | {"review_on": None} == {
            "tier": None,
            "tier_since": None,
            "next_tier": "Insider",
            "basis": "points",
            "unit": "points",
            "value": 0,
            "threshold": 1,
            "missing": 1,
            "percent": 0,
            "keeps_tier": True,
            "review_on": None,
            "values": {"points": 0, "spend": "0.00"},
        }
        buy(ada, "400.50")
        buy(bea, "1200")
        tiers_recompute(contact_ids=[ada.pk, bea.pk])

        progress = tier_progress(ada)
        top = tier_progress(bea)

    assert progress["tier"] == "VIB" and progress["tier_since"] == T0
    assert (progress["next_tier"], progress["unit"], progress["value"]) == (
        "Rouge",
        "EUR",
        "400.50",
    )
    assert (progress["missing"], progress["percent"], progress["keeps_tier"]) == (
        "599.50",
        40,
        True,
    )
    assert progress["review_on"] == dt.date(2027, 1, 1)
    assert (top["tier"], top["next_tier"], top["missing"], top["percent"]) == (
        "Rouge",
        None,
        "0.00",
        100,
    )


def _many(n: int, at: dt.datetime) -> list[Contact]:
    """n contacts in bulk: a third Rouge on spend, a third VIB, a third Insider on
    points only (orders in another currency)."""
    contacts = Contact.objects.bulk_create(
        Contact(email=f"bulk{next(_numbers)}@example.com", created_at=at, updated_at=at)
        for _ in range(n)
    )
    totals = [("1200", "EUR"), ("400", "EUR"), ("50", "USD")]
    Order.objects.bulk_create(
        Order(
            external_id=f"bulk-{next(_numbers)}",
            contact=c,
            total=Decimal(totals[i % 3][0]),
            currency=totals[i % 3][1],
            ordered_at=at,
        )
        for i, c in enumerate(contacts)
    )
    LedgerEntry.objects.bulk_create(
        LedgerEntry(
            contact=c,
            unit=POINTS,
            type=LedgerEntry.Type.EARN,
            amount=Decimal(totals[i % 3][0]),
            remaining=Decimal(totals[i % 3][0]),
            reason="Order",
            source_type="order",
            idempotency_key=f"bulk:{c.pk}",
            created_at=at,
        )
        for i, c in enumerate(contacts)
    )
    return contacts


@pytest.mark.parametrize("n", [20, 200])
def test_the_nightly_pass_is_set_based_and_a_second_run_changes_nothing(
    n, django_assert_max_num_queries
):
    with time_machine.travel(T0, tick=False):
        contacts = _many(n, T0 - 30 * DAY)

        # (on SQLite, a ContactTier and a TierChange insert per 199 rows)
        with django_assert_max_num_queries(10 + 2 * split_inserts(n, 5)):
            first = tiers_recompute()
        snapshot = list(ContactTier.objects.order_by("pk").values_list())
        with django_assert_max_num_queries(10):
            second = tiers_recompute()

    assert first == counts(upgraded=n)
    assert second == counts(unchanged=n)
    assert list(ContactTier.objects.order_by("pk").values_list()) == snapshot
    assert TierChange.objects.count() == n  # each change recorded once
    ranks = {c.pk: i % 3 for i, c in enumerate(contacts)}
    names = {0: "Rouge", 1: "VIB", 2: "Insider"}
    assert dict(ContactTier.objects.values_list("contact_id", "tier__name")) == {
        pk: names[r] for pk, r in ranks.items()
    }


def test_the_given_contacts_also_in_constant_queries(django_assert_max_num_queries):
    with time_machine.travel(T0, tick=False):
        contacts = _many(200, T0 - DAY)
        with django_assert_max_num_queries(9 + 2 * split_inserts(200, 5)):
            assert tiers_recompute(contact_ids=[c.pk for c in contacts]) == counts(upgraded=200)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_record_each_change_once(monkeypatch):
    with time_machine.travel(T0, tick=False):
        contacts = _many(60, T0 - DAY)
        tiers_recompute()
        vib = [c for i, c in enumerate(contacts) if i % 3 == 1]
        for c in vib:  # one more order each: VIB → Rouge
            Order.objects.create(
                external_id=f"more-{c.pk}",
                contact=c,
                total=Decimal("700"),
                currency="EUR",
                ordered_at=T0,
            )

    # Hold each run between reading the values and writing, so both would read the
    # same old tiers if nothing serialised them.
    real_values = tiers_service.tier_values

    def slow_values(ids, now):
        values = real_values(ids, now)
        time.sleep(0.3)
        return values

    monkeypatch.setattr(tiers_service, "tier_values", slow_values)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(tiers_recompute(now=T0 + DAY, allow_downgrade=False))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(r["upgraded"] for r in results) == len(vib)
    assert TierChange.objects.filter(to_tier__name="Rouge", from_tier__name="VIB").count() == len(
        vib
    )
