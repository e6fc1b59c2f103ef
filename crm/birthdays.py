"""The one birthday rule, for segments, date triggers and birthday bonuses alike.

A birthday (or any yearly date on a contact: a signup anniversary, a date attribute) is
celebrated on its month and day, in the contact's own time zone (the shop's when they have
none); 29 February is celebrated on 28 February in years that have no 29 February. The
functions build Django `Q` filters over Contact, so each caller stays one query."""

from __future__ import annotations

import calendar
import datetime as dt
from collections import defaultdict

from django.db.models import Q
from django.db.models.functions import ExtractDay, ExtractMonth
from django.db.models.lookups import GreaterThanOrEqual, LessThanOrEqual

from crm.clock import zone_named
from crm.models import timezone_names


def celebrated_on(field: str, day: dt.date) -> Q:
    """Contacts whose `field` (birthday, created_at, or attributes.<key> holding an ISO
    date) is celebrated on `day`."""
    days = [(day.month, day.day)]
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        days.append((2, 29))
    q = Q()
    for month, day_of_month in days:
        if field.startswith("attributes."):
            key = field.split(".", 1)[1]
            q |= Q(**{f"attributes__{key}__regex": rf"^[0-9]{{4}}-{month:02d}-{day_of_month:02d}"})
        else:
            q |= Q(**{f"{field}__month": month, f"{field}__day": day_of_month})
    return q


def celebrated_between(field: str, first: dt.date, last: dt.date) -> Q:
    """Contacts whose date `field` (a date column) is celebrated on a day from `first` to
    `last` (inclusive, less than a year apart)."""
    if (last - first).days >= 365:
        return Q(**{f"{field}__isnull": False})
    month_day = ExtractMonth(field) * 100 + ExtractDay(field)

    def within(year: int, low: int, high: int) -> Q:
        q = Q(GreaterThanOrEqual(month_day, low)) & Q(LessThanOrEqual(month_day, high))
        if not calendar.isleap(year) and low <= 228 <= high:
            q |= Q(**{f"{field}__month": 2, f"{field}__day": 29})
        return q

    start, end = first.month * 100 + first.day, last.month * 100 + last.day
    if first.year == last.year:
        inside = within(first.year, start, end)
    else:  # across the new year
        inside = within(first.year, start, 1231) | within(last.year, 101, end)
    return Q(**{f"{field}__isnull": False}) & inside


def local_dates(now: dt.datetime) -> dict[dt.date, Q]:
    """The contacts of each local date at `now`, as a filter on their zone ('' is the
    shop's): two or three dates at any moment, so a filter per date covers everyone. The
    date most zones share takes everyone outside the others' zones, so a filter names a
    few dozen zones rather than all six hundred (SQLite before 3.32 allows 999 parameters
    a statement), and a zone this system does not know counts there."""
    dates: dict[dt.date, list[str]] = defaultdict(list)
    for name in ("", *sorted(timezone_names())):
        dates[now.astimezone(zone_named(name)).date()].append(name)
    widest = max(dates, key=lambda day: len(dates[day]))
    others = [name for day, names in dates.items() if day != widest for name in names]
    return {
        day: ~Q(timezone__in=others) if day == widest else Q(timezone__in=names)
        for day, names in dates.items()
    }


def celebrated_within(field: str, now: dt.datetime, days: int) -> Q:
    """Contacts whose `field` is celebrated within the next `days` days (today included),
    counted in their own zone."""
    q = Q()
    for day, zones in local_dates(now).items():
        q |= zones & celebrated_between(field, day, day + dt.timedelta(days=days))
    return q


def celebrated_this_month(field: str, now: dt.datetime) -> Q:
    """Contacts whose `field` falls in the current month of their own zone."""
    q = Q()
    for day, zones in local_dates(now).items():
        q |= zones & Q(**{f"{field}__month": day.month})
    return q
