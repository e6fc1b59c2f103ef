"""Date triggers: a birthday campaign reaches a contact on the day in their own zone, and a
29 February birthday on 28 February in years without one (crm.birthdays, the rule
segments and birthday bonuses share)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from campaigns.models import Campaign, Enrollment
from campaigns.services.definitions import campaign_publish
from campaigns.services.triggers import date_triggers_run
from crm.models import Contact

pytestmark = pytest.mark.django_db


@pytest.fixture
def birthday_campaign(db):
    campaign = Campaign.objects.create(
        name="Birthday",
        trigger={"type": "date", "field": "birthday"},
        steps=[{"id": "wait", "type": "wait", "config": {"days": 1}}],
    )
    campaign_publish(campaign=campaign)
    return campaign


def leapling(zone: str = "") -> Contact:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return Contact.objects.create(
        email="leap@example.com",
        birthday=date(1992, 2, 29),
        timezone=zone,
        created_at=moment,
        updated_at=moment,
    )


def enrolled_on(moment: datetime) -> int:
    with time_machine.travel(moment, tick=False):
        date_triggers_run()
    return Enrollment.objects.count()


def test_a_29_february_birthday_is_celebrated_on_the_28th_in_other_years(birthday_campaign):
    leapling()
    assert enrolled_on(datetime(2027, 2, 27, 12, tzinfo=UTC)) == 0
    assert enrolled_on(datetime(2027, 2, 28, 12, tzinfo=UTC)) == 1
    assert enrolled_on(datetime(2027, 3, 1, 12, tzinfo=UTC)) == 1  # not again on 1 March


def test_a_29_february_birthday_is_celebrated_on_the_29th_in_leap_years(birthday_campaign):
    leapling()
    assert enrolled_on(datetime(2028, 2, 28, 12, tzinfo=UTC)) == 0
    assert enrolled_on(datetime(2028, 2, 29, 12, tzinfo=UTC)) == 1


def test_the_day_is_the_contacts_own(birthday_campaign):
    leapling("Asia/Tokyo")
    evening_of_the_27th = datetime(2027, 2, 27, 14, 30, tzinfo=UTC)  # 23:30 in Tokyo
    assert enrolled_on(evening_of_the_27th) == 0
    assert enrolled_on(evening_of_the_27th + timedelta(hours=1)) == 1  # 00:30 on the 28th
