"""Loyalty keeps going on odd orders: back-dated ones (older than the points expiry, or
arriving after later orders), a zero total, a currency without an earn rule, a refund of
an order that earned nothing or whose points already expired, an order of a contact
deleted meanwhile. Nothing raises, tiers and referrals are still brought up to date, and
every order in a currency with an earn rule gets exactly one earn entry (a zero one when
it earns nothing), so the nightly reconcile never retries it."""

import datetime as dt
import logging
from decimal import Decimal

import pytest
import time_machine

from crm.models import Contact, Order
from crm.services.contacts import Identity
from crm.services.orders import OrderIn, order_refund, orders_place
from loyalty.models import (
    POINTS,
    BonusRule,
    ContactTier,
    EarnRule,
    LedgerEntry,
    Referral,
    ReferralCode,
    Tier,
)
from loyalty.services.ledger import ledger_expire_due, ledger_sum
from loyalty.services.orders import order_earn
from loyalty.services.points import add_months
from loyalty.tasks import order_placed_task, order_refunded_task, reconcile_task

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)  # not a review day
DAY = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def programme(settings):
    settings.KEEPERS_BASE_CURRENCY = "USD"
    settings.KEEPERS_TIER_REVIEW = "01-01"
    settings.KEEPERS_SHOP_TIME_ZONE = "UTC"
    settings.KEEPERS_REFERRAL_MIN_ORDER = 30
    EarnRule.objects.create(currency="USD", points_per_unit=Decimal("1"), expiry_months=12)
    BonusRule.objects.create(kind=BonusRule.Kind.FIRST_ORDER, points=100)
    Tier.objects.create(name="Insider", rank=1, basis="spend", threshold=Decimal("1"))
    Tier.objects.create(
        name="VIB", rank=2, basis="spend", threshold=Decimal("350"), multiplier=Decimal("1.25")
    )
    with time_machine.travel(T0, tick=False):
        yield


def person(email: str = "ada@example.com", **fields) -> Contact:
    return Contact.objects.create(email=email, created_at=T0 - 900 * DAY, updated_at=T0, **fields)


def stored(contact: Contact, ref: str, total: str, at: dt.datetime, currency="USD", **attrs):
    """An order as crm stores it; loyalty's task has not run for it yet."""
    return Order.objects.create(
        external_id=ref,
        contact=contact,
        total=Decimal(total),
        currency=currency,
        ordered_at=at,
        attributes=attrs,
    )


def placed(contact: Contact, ref: str, total: str, at: dt.datetime, currency="USD", **attrs):
    """An order with loyalty's task run for it (as the worker would, after commit)."""
    order = stored(contact, ref, total, at, currency, **attrs)
    order_placed_task(order.pk)
    return order


def earn_entries(order: Order) -> list[tuple[int, str]]:
    return [
        (int(e.amount), e.reason)
        for e in LedgerEntry.objects.filter(order=order, type="earn").order_by("pk")
    ]


def tier_of(contact: Contact) -> str | None:
    row = ContactTier.objects.select_related("tier").filter(contact=contact).first()
    return row.tier.name if row and row.tier else None


def first_order_bonuses(contact: Contact) -> int:
    return LedgerEntry.objects.filter(contact=contact, reason="Bonus: First order").count()


# --- back-dated orders ----------------------------------------------------------------------
def test_an_order_older_than_the_points_expiry_earns_nothing_and_tiers_still_run():
    ada = person()
    stored(ada, "recent", "400", T0 - 10 * DAY)  # its own task comes later
    old = placed(ada, "old", "120", T0 - 400 * DAY)  # raised "The expiry is already past."

    assert earn_entries(old) == [
        (0, "Order old: no points, they expired on 2026-01-26 before the order was recorded")
    ]
    assert ledger_sum(ada, POINTS) == 0
    assert first_order_bonuses(ada) == 0  # the first order's bonus would have expired too
    assert tier_of(ada) == "VIB"  # the tier update after it still ran


def test_an_order_whose_points_expire_exactly_now_earns_nothing():
    ada = person()
    order = placed(ada, "boundary", "50", add_months(T0, -12))
    assert [amount for amount, _reason in earn_entries(order)] == [0]


def test_a_back_dated_order_within_the_expiry_earns_points_that_expire_on_time():
    ada = person()
    order = placed(ada, "late", "80", T0 - 300 * DAY)
    entry = LedgerEntry.objects.get(order=order, type="earn")
    assert entry.amount == 80 and entry.expires_at == add_months(T0 - 300 * DAY, 12)


def test_an_earlier_order_arriving_after_a_later_one_earns_no_second_first_order_bonus():
    ada = person()
    placed(ada, "second", "40", T0 - DAY)
    placed(ada, "first", "40", T0 - 30 * DAY)  # back-dated: it arrives late
    assert first_order_bonuses(ada) == 1


def test_a_back_dated_order_through_the_batch_api_logs_no_failure(
    django_capture_on_commit_callbacks, caplog
):
    ada = person()
    with caplog.at_level(logging.ERROR), django_capture_on_commit_callbacks(execute=True):
        orders_place(
            [
                OrderIn(
                    external_id="imported",
                    identity=Identity(email=ada.email),
                    total=Decimal("60"),
                    currency="USD",
                    ordered_at=T0 - 500 * DAY,
                    lines=[],
                    attributes={},
                )
            ]
        )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert earn_entries(Order.objects.get(external_id="imported"))[0][0] == 0


# --- referrals on back-dated orders -----------------------------------------------------------
@pytest.mark.parametrize("days_ago", [90, 400])  # within the points expiry, and past it
def test_an_order_placed_before_the_friend_was_referred_does_not_qualify_the_referral(days_ago):
    referrer, friend = person("ref@example.com"), person("friend@example.com")
    code = ReferralCode.objects.create(contact=referrer, code="ABCD2345", created_at=T0)
    referral = Referral.objects.create(
        referrer=referrer, friend=friend, code=code, channel="form", created_at=T0 - DAY
    )
    placed(friend, "before", "90", T0 - days_ago * DAY)
    referral.refresh_from_db()
    assert (referral.status, referral.reason) == (
        Referral.Status.REFUSED,
        "already a customer before the referral",
    )


def test_a_late_first_order_placed_after_the_referral_still_qualifies_it():
    referrer, friend = person("ref@example.com"), person("friend@example.com")
    code = ReferralCode.objects.create(contact=referrer, code="ABCD2345", created_at=T0)
    referral = Referral.objects.create(
        referrer=referrer, friend=friend, code=code, channel="form", created_at=T0 - 600 * DAY
    )
    placed(friend, "late", "90", T0 - 400 * DAY)  # arrives now, past its points expiry
    referral.refresh_from_db()
    assert referral.status == Referral.Status.PENDING
    assert referral.reward_at == T0 - 370 * DAY  # the return window closed long ago


# --- the nightly reconcile --------------------------------------------------------------------
def test_the_reconcile_records_orders_that_earn_nothing_once_and_goes_on_past_them():
    ada, bo = person(), person("bo@example.com")
    expired = stored(ada, "expired", "70", T0 - 500 * DAY)  # reconcile raised on it, and stopped
    tiny = stored(ada, "tiny", "0.40", T0 - 3 * DAY)  # 0 points: retried every night
    free = stored(ada, "free", "0", T0 - 2 * DAY)
    missed = stored(bo, "missed", "25", T0 - DAY)

    first = reconcile_task(days=800)
    assert first["earned"] == 1 and first["checked"] == 4
    assert [e[0] for o in (expired, tiny, free, missed) for e in earn_entries(o)] == [0, 0, 0, 25]
    assert reconcile_task(days=800)["checked"] == 0  # nothing left to retry


# --- refunds ----------------------------------------------------------------------------------
def test_a_refund_after_the_orders_points_expired_takes_nothing_from_other_points():
    ada = person()
    old = placed(ada, "old", "50", T0 - 330 * DAY)  # 50 points, they expire in a month
    placed(ada, "new", "100", T0)  # 100 points
    with time_machine.travel(T0 + 60 * DAY, tick=False):
        assert ledger_expire_due() == 1
        refund, _ = order_refund(order_external_id=old.external_id, refund_id="r")
        order_refunded_task(refund.pk)
    assert ledger_sum(ada, POINTS) == 100 + 100  # the new order's points and the bonus


@pytest.mark.parametrize("kind", ["expired", "other currency", "zero points"])
def test_a_refund_of_an_order_that_earned_nothing_takes_nothing(kind):
    ada = person()
    placed(ada, "kept", "100", T0 - DAY)  # 100 points + the first-order bonus
    odd = {
        "expired": lambda: placed(ada, "odd", "80", T0 - 400 * DAY),
        "other currency": lambda: placed(ada, "odd", "8000", T0, currency="JPY"),
        "zero points": lambda: placed(ada, "odd", "0.60", T0),
    }[kind]()
    refund, _ = order_refund(order_external_id=odd.external_id, refund_id="r")
    order_refunded_task(refund.pk)
    assert ledger_sum(ada, POINTS) == 200
    assert not LedgerEntry.objects.filter(type="clawback").exclude(amount=0).exists()


# --- zero totals, other currencies, deleted contacts ------------------------------------------
def test_a_zero_total_order_is_recorded_as_earning_nothing_and_gets_the_first_order_bonus():
    ada = person()
    order = placed(ada, "free", "0", T0)
    assert earn_entries(order) == [(0, "Order free: no points")]
    assert first_order_bonuses(ada) == 1


def test_an_order_in_a_currency_without_an_earn_rule_earns_no_points_and_runs_the_rest():
    referrer, friend = person("ref@example.com"), person("friend@example.com")
    code = ReferralCode.objects.create(contact=referrer, code="ABCD2345", created_at=T0)
    referral = Referral.objects.create(
        referrer=referrer, friend=friend, code=code, channel="form", created_at=T0 - DAY
    )
    order = placed(friend, "yen", "9000", T0, currency="JPY")
    assert earn_entries(order) == []
    assert first_order_bonuses(friend) == 1  # their first order, whatever its currency
    referral.refresh_from_db()
    assert referral.status == Referral.Status.REFUSED  # the minimum is in USD


def test_an_order_of_a_contact_deleted_meanwhile_is_skipped():
    ada = person()
    order = stored(ada, "gone", "50", T0)
    refund, _ = order_refund(order_external_id="gone", refund_id="r")
    ada.delete()  # right to erasure, after the order's task was queued
    order_placed_task(order.pk)
    order_refunded_task(refund.pk)
    assert order_earn(order=order) is None  # a task that had loaded the order already
    assert not LedgerEntry.objects.exists()
