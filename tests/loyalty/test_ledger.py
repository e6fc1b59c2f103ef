"""The ledger: oldest-expiry-first consumption, expiry, redeem windows, refund clawback,
idempotency, and no double spend under concurrency."""

import datetime as dt
import threading
from decimal import Decimal

import pytest
import time_machine
from django.db import connection

from crm.models import Contact, Order
from crm.services.orders import order_refund
from loyalty.models import POINTS, Allocation, EarnRule, LedgerEntry
from loyalty.services.credit import credit_grant, credit_redeem
from loyalty.services.ledger import (
    InsufficientBalance,
    ledger_balances,
    ledger_expire_due,
    ledger_grant,
    ledger_sum,
)
from loyalty.services.orders import order_earn
from loyalty.services.points import order_clawback, points_redeem_for_credit

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def person(email: str = "ada@example.com") -> Contact:
    return Contact.objects.create(email=email, created_at=T0, updated_at=T0)


def remaining(entry: LedgerEntry) -> Decimal:
    entry.refresh_from_db()
    return entry.remaining


def test_a_redemption_takes_from_the_grant_expiring_first_and_records_it():
    ada = person()
    later = credit_grant(
        contact=ada,
        amount=Decimal("30"),
        currency="EUR",
        reason="bonus",
        key="b",
        expires_at=T0 + 30 * DAY,
        now=T0,
    )[0]
    never = credit_grant(
        contact=ada, amount=Decimal("5"), currency="EUR", reason="cash", key="c", now=T0
    )[0]
    sooner = credit_grant(
        contact=ada,
        amount=Decimal("35"),
        currency="EUR",
        reason="welcome",
        key="w",
        expires_at=T0 + 14 * DAY,
        now=T0,
    )[0]

    spent, created = credit_redeem(
        contact=ada, amount=Decimal("50"), currency="EUR", key="r1", order_ref="o1", now=T0
    )

    assert created and spent.amount == Decimal("-50")
    assert (remaining(sooner), remaining(later), remaining(never)) == (0, 15, 5)
    assert sorted((a.grant_id, a.amount) for a in Allocation.objects.filter(debit=spent)) == sorted(
        [(sooner.pk, Decimal("35")), (later.pk, Decimal("15"))]
    )
    assert ledger_sum(ada, "EUR") == Decimal("20")
    assert ledger_balances(ada, now=T0)["EUR"].available == Decimal("20")


def test_never_more_than_the_balance_and_never_across_currencies():
    ada = person()
    credit_grant(contact=ada, amount=Decimal("10"), currency="EUR", reason="x", key="g", now=T0)

    with pytest.raises(InsufficientBalance, match=r"10\.00 EUR available, 10\.01 EUR asked"):
        credit_redeem(contact=ada, amount=Decimal("10.01"), currency="EUR", key="r", now=T0)
    with pytest.raises(InsufficientBalance, match=r"0\.00 USD available"):
        credit_redeem(contact=ada, amount=Decimal("1"), currency="USD", key="r2", now=T0)
    assert LedgerEntry.objects.filter(type="redeem").count() == 0


def test_the_same_key_returns_the_first_result_and_moves_nothing():
    ada = person()
    credit_grant(contact=ada, amount=Decimal("10"), currency="EUR", reason="x", key="g", now=T0)

    first, created = credit_redeem(
        contact=ada, amount=Decimal("4"), currency="EUR", key="k", now=T0
    )
    again, created_again = credit_redeem(
        contact=ada, amount=Decimal("4"), currency="EUR", key="k", now=T0
    )

    assert created and not created_again and again.pk == first.pk
    assert ledger_sum(ada, "EUR") == Decimal("6")


def test_expiry_writes_an_entry_for_what_is_left_and_only_once():
    ada = person()
    welcome = credit_grant(
        contact=ada,
        amount=Decimal("35"),
        currency="EUR",
        reason="welcome",
        key="w",
        expires_at=T0 + 14 * DAY,
        now=T0,
    )[0]
    credit_redeem(contact=ada, amount=Decimal("10"), currency="EUR", key="r", now=T0 + DAY)

    assert ledger_expire_due(now=T0 + 13 * DAY) == 0
    with time_machine.travel(T0 + 14 * DAY, tick=False):
        assert ledger_expire_due() == 1
        assert ledger_expire_due() == 0

    expired = LedgerEntry.objects.get(type="expire")
    assert expired.amount == Decimal("-25") and remaining(welcome) == 0
    assert ledger_sum(ada, "EUR") == 0
    with pytest.raises(InsufficientBalance):
        credit_redeem(
            contact=ada, amount=Decimal("1"), currency="EUR", key="late", now=T0 + 15 * DAY
        )


def test_shop_cash_is_spendable_only_inside_its_redeem_window():
    ada = person()
    credit_grant(
        contact=ada,
        amount=Decimal("20"),
        currency="EUR",
        reason="shop cash",
        key="sc",
        redeemable_from=T0 + 10 * DAY,
        expires_at=T0 + 20 * DAY,
        now=T0,
    )

    before = ledger_balances(ada, now=T0 + DAY)["EUR"]
    assert (before.available, before.pending) == (0, Decimal("20"))
    with pytest.raises(InsufficientBalance):
        credit_redeem(contact=ada, amount=Decimal("5"), currency="EUR", key="early", now=T0 + DAY)
    credit_redeem(contact=ada, amount=Decimal("5"), currency="EUR", key="in", now=T0 + 11 * DAY)
    with pytest.raises(InsufficientBalance):
        credit_redeem(
            contact=ada, amount=Decimal("5"), currency="EUR", key="after", now=T0 + 21 * DAY
        )
    assert ledger_sum(ada, "EUR") == Decimal("15")


def test_bad_grants_name_the_field():
    ada = person()
    for kwargs, field in [
        ({"unit": POINTS, "amount": Decimal("1.5")}, "amount"),
        ({"unit": "EUR", "amount": Decimal("0")}, "amount"),
        ({"unit": "euros", "amount": 1}, "currency"),
        ({"unit": "EUR", "amount": 1, "reason": " "}, "reason"),
    ]:
        with pytest.raises(Exception) as error:
            ledger_grant(contact=ada, key="x", **{"reason": "r", **kwargs})
        assert error.value.field == field


def order_for(contact: Contact, total: str, ref: str = "o1", at=T0) -> Order:
    return Order.objects.create(
        external_id=ref, contact=contact, total=Decimal(total), currency="EUR", ordered_at=at
    )


def test_an_order_earns_points_once_and_a_refund_claws_them_back_never_below_zero():
    EarnRule.objects.create(currency="EUR", points_per_unit=Decimal("1"), expiry_months=12)
    ada = person()
    order = order_for(ada, "120.50")

    earned = order_earn(order=order, now=T0)
    assert order_earn(order=order, now=T0).pk == earned.pk
    assert earned.amount == 120 and earned.expires_at == dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC)

    # half the points are spent on store credit before the refund
    points_redeem_for_credit(contact=ada, points=100, currency="EUR", key="swap", now=T0 + DAY)
    assert ledger_sum(ada, POINTS) == 20

    refund, _ = order_refund(
        order_external_id=order.external_id, amount=Decimal("60.25"), refund_id="r1"
    )
    first = order_clawback(refund=refund, now=T0 + 2 * DAY)
    assert first.amount == -20 and first.shortfall == 40  # 60 due, only 20 left
    assert order_clawback(refund=refund, now=T0 + 2 * DAY).pk == first.pk
    assert ledger_sum(ada, POINTS) == 0

    rest, _ = order_refund(
        order_external_id=order.external_id, amount=Decimal("60.25"), refund_id="r2"
    )
    second = order_clawback(refund=rest, now=T0 + 3 * DAY)
    assert second.amount == 0 and second.shortfall == 60
    assert ledger_sum(ada, POINTS) == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_redemptions_spend_exactly_the_balance():
    ada = person()
    credit_grant(contact=ada, amount=Decimal("50"), currency="EUR", reason="x", key="g1", now=T0)
    credit_grant(
        contact=ada,
        amount=Decimal("50"),
        currency="EUR",
        reason="y",
        key="g2",
        expires_at=T0 + 30 * DAY,
        now=T0,
    )
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def redeem(n: int) -> None:
        try:
            barrier.wait()
            credit_redeem(contact=ada, amount=Decimal("15"), currency="EUR", key=f"t{n}", now=T0)
            outcomes.append("ok")
        except InsufficientBalance:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count("ok") == 6 and outcomes.count("refused") == 14  # 6 × 15 ≤ 100
    assert ledger_sum(ada, "EUR") == Decimal("10")
    grants = LedgerEntry.objects.filter(contact=ada, type="earn")
    for g in grants:
        allocated = sum(a.amount for a in Allocation.objects.filter(grant=g))
        assert g.remaining == g.amount - allocated
