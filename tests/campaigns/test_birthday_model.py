"""Birthday journeys on many contacts against a plain statement of the rule: run hourly, a
birthday campaign enrols each contact once on the day of their birthday in their own time
zone (the shop's, UTC, without one), 29 February on the 28th in years without one — over
two days around a DST change, a new year or 29 February, for generated contacts."""

from __future__ import annotations

import calendar
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.models import Campaign, Enrollment
from campaigns.services.definitions import campaign_publish
from campaigns.services.triggers import date_triggers_run
from crm.models import Contact

pytestmark = pytest.mark.django_db

ZONES = (
    "",
    "Pacific/Kiritimati",
    "Asia/Tokyo",
    "Europe/Paris",
    "America/New_York",
    "Pacific/Pago_Pago",
)
STARTS = (
    dt.datetime(2027, 2, 27, 0, 30, tzinfo=dt.UTC),  # 28 Feb in a year without a 29th
    dt.datetime(2028, 2, 28, 0, 30, tzinfo=dt.UTC),  # a leap year
    dt.datetime(2026, 3, 7, 0, 30, tzinfo=dt.UTC),  # New York's DST change
    dt.datetime(2026, 12, 31, 0, 30, tzinfo=dt.UTC),  # the new year
)
birthdays = st.sampled_from(
    [
        dt.date(1992, 2, 29),
        dt.date(1990, 2, 28),
        dt.date(1985, 3, 1),
        dt.date(1980, 3, 8),
        dt.date(1970, 12, 31),
        dt.date(1999, 1, 1),
        dt.date(2000, 3, 7),
        dt.date(2001, 1, 2),
    ]
)


def celebrated(birthday: dt.date, year: int) -> dt.date:
    """The rule: the birthday's day this year; 29 February on the 28th without a 29th."""
    if (birthday.month, birthday.day) == (2, 29) and not calendar.isleap(year):
        return dt.date(year, 2, 28)
    return dt.date(year, birthday.month, birthday.day)


def expected(people: list[tuple[str, dt.date]], runs: list[dt.datetime]) -> dict[int, int]:
    """Per person: how many enrolments the hourly runs make (each local day seen once)."""
    result = {}
    for n, (zone, birthday) in enumerate(people):
        days = {run.astimezone(ZoneInfo(zone or "UTC")).date() for run in runs}
        result[n] = sum(1 for day in days if celebrated(birthday, day.year) == day)
    return result


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    people=st.lists(st.tuples(st.sampled_from(ZONES), birthdays), min_size=1, max_size=40),
    start=st.sampled_from(STARTS),
)
def test_birthday_journeys_enrol_each_contact_on_their_local_day(people, start):
    runs = [start + dt.timedelta(hours=h) for h in range(49)]
    with transaction.atomic():
        campaign = Campaign.objects.create(
            name="Birthday",
            trigger={"type": "date", "field": "birthday"},
            reentry=Campaign.Reentry.ALWAYS,
            steps=[{"id": "wait", "type": "wait", "config": {"days": 7}}],
        )
        campaign_publish(campaign=campaign)
        contacts = Contact.objects.bulk_create(
            Contact(
                email=f"p{n}@example.com",
                timezone=zone,
                birthday=birthday,
                created_at=start,
                updated_at=start,
            )
            for n, (zone, birthday) in enumerate(people)
        )
        for run in runs:
            with time_machine.travel(run, tick=False):
                date_triggers_run()
        counts = {
            n: Enrollment.objects.filter(contact=contact).count()
            for n, contact in enumerate(contacts)
        }
        transaction.set_rollback(True)
    assert counts == expected(people, runs)
