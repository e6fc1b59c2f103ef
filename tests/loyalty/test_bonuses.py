"""Bonus points: an event (a review), the first order, a birthday in the contact's own
time zone — each once."""

import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from crm.models import Contact, Order
from loyalty.models import BonusRule, EarnRule, LedgerEntry
from loyalty.services.orders import order_earn
from loyalty.services.points import birthday_bonuses
from tests.campaigns.conftest import track

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)


def bonuses(contact) -> list[str]:
    return list(
        LedgerEntry.objects.filter(contact=contact, source_type="bonus")
        .order_by("pk")
        .values_list("reason", flat=True)
    )


def test_a_review_earns_its_bonus_once(django_capture_on_commit_callbacks):
    BonusRule.objects.create(kind="event", event="Review Submitted", points=50)
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
        track("ada@example.com", "Review Submitted", T0, "rev-1", product_id="K")
        track("ada@example.com", "Review Submitted", T0, "rev-1", product_id="K")  # a repeat
        track("ada@example.com", "Product Viewed", T0, "view-1", product_id="K")
    ada = Contact.objects.get(email="ada@example.com")
    assert bonuses(ada) == ["Bonus: Review Submitted"]


def test_the_first_order_earns_a_bonus_and_the_second_does_not():
    EarnRule.objects.create(currency="EUR", points_per_unit=Decimal("1"))
    BonusRule.objects.create(kind="first_order", points=100)
    ada = Contact.objects.create(email="ada@example.com", created_at=T0, updated_at=T0)
    for ref, at in (("o1", T0), ("o2", T0 + dt.timedelta(days=3))):
        order_earn(
            order=Order.objects.create(
                external_id=ref, contact=ada, total=20, currency="EUR", ordered_at=at
            ),
            now=at,
        )
    assert bonuses(ada) == ["Bonus: First order"]


def test_a_birthday_bonus_comes_on_the_day_in_their_zone_once_a_year():
    BonusRule.objects.create(kind="birthday", points=200)
    tokyo = Contact.objects.create(
        email="t@example.com",
        birthday=dt.date(1990, 3, 3),
        timezone="Asia/Tokyo",
        created_at=T0,
        updated_at=T0,
    )
    paris = Contact.objects.create(
        email="p@example.com",
        birthday=dt.date(1985, 3, 3),
        timezone="Europe/Paris",
        created_at=T0,
        updated_at=T0,
    )
    late_on_the_2nd = dt.datetime(2026, 3, 2, 16, tzinfo=dt.UTC)  # 01:00 on the 3rd in Tokyo
    assert birthday_bonuses(now=late_on_the_2nd) == 1
    assert birthday_bonuses(now=late_on_the_2nd + dt.timedelta(hours=8)) == 1  # Paris's 3rd
    assert birthday_bonuses(now=late_on_the_2nd + dt.timedelta(hours=9)) == 0
    assert bonuses(tokyo) == bonuses(paris) == ["Bonus: Birthday"]


def test_a_29_february_birthday_bonus_comes_on_the_28th_in_other_years():
    BonusRule.objects.create(kind="birthday", points=200)
    leap = Contact.objects.create(
        email="leap@example.com",
        birthday=dt.date(1992, 2, 29),
        timezone="Asia/Tokyo",
        created_at=T0,
        updated_at=T0,
    )
    evening_of_the_27th = dt.datetime(2027, 2, 27, 14, 30, tzinfo=dt.UTC)  # 23:30 in Tokyo
    assert birthday_bonuses(now=evening_of_the_27th) == 0
    assert birthday_bonuses(now=evening_of_the_27th + dt.timedelta(hours=1)) == 1  # the 28th
    assert birthday_bonuses(now=evening_of_the_27th + dt.timedelta(days=1)) == 0  # 1 March
    assert birthday_bonuses(now=dt.datetime(2028, 2, 28, 3, tzinfo=dt.UTC)) == 0  # a leap year
    assert birthday_bonuses(now=dt.datetime(2028, 2, 29, 3, tzinfo=dt.UTC)) == 1  # … the 29th
    assert bonuses(leap) == ["Bonus: Birthday", "Bonus: Birthday"]
