"""The options of crm's reference fields in the admin's editors (crm/kinds.py sources):
stages, tags, segments, topics, products, categories, event names and the contact dates a
yearly trigger follows. Each is one bounded
query, read when an editor's document is built."""

from __future__ import annotations

import datetime as dt

from django.utils.translation import gettext_lazy as _

from crm import clock
from crm.kinds import kind_source_register
from crm.models import Event, Product, Segment, Stage, Tag, Topic

LIMIT = 1000  # options an editor lists; more is typed into the advanced JSON
EVENTS_SEEN_DAYS = 90  # "recent": what staff are likely to build on
RECENT = 5000  # rows read to find the names in use (events are too many to scan)


def stages() -> list[tuple[str, str]]:
    return [(value, str(label)) for value, label in Stage.choices]


def tags() -> list[tuple[str, str]]:
    return [(name, name) for name in Tag.objects.values_list("name", flat=True)[:LIMIT]]


def segments() -> list[tuple[int, str]]:
    rows = Segment.objects.filter(is_template=False).order_by("name")
    return list(rows.values_list("pk", "name")[:LIMIT])


def topics() -> list[tuple[str, str]]:
    return list(Topic.objects.values_list("slug", "name")[:LIMIT])


def products() -> list[tuple[str, str]]:
    rows = Product.objects.order_by("name").values_list("product_id", "name")[:LIMIT]
    return [(ref, f"{name} ({ref})" if name else ref) for ref, name in rows]


def categories() -> list[tuple[str, str]]:
    rows = Product.objects.exclude(category="").order_by("category")
    names = rows.values_list("category", flat=True).distinct()[:LIMIT]
    return [(name, name) for name in names]


def events() -> list[tuple[str, str]]:
    """The names among the newest contacts' events of the last EVENTS_SEEN_DAYS days (read
    backwards by id and bounded: the table is too big to scan)."""
    since = clock.now() - dt.timedelta(days=EVENTS_SEEN_DAYS)
    recent = Event.objects.filter(contact__isnull=False, occurred_at__gte=since).order_by("-id")
    names = sorted(set(recent.values_list("name", flat=True)[:RECENT]))
    return [(name, name) for name in names]


def date_fields() -> list[tuple[str, str]]:
    """The contact dates a yearly trigger can follow (attributes.<name> is typed in)."""
    return [("birthday", str(_("Birthday"))), ("created_at", str(_("Signup date")))]


def register() -> None:
    for name, options in {
        "stages": stages,
        "tags": tags,
        "segments": segments,
        "topics": topics,
        "products": products,
        "categories": categories,
        "events": events,
        "date_fields": date_fields,
    }.items():
        kind_source_register(name, options)
