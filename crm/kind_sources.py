"""The options of the reference fields crm's data answers (crm.kinds' sources), registered
from CrmConfig.ready: every editor that names a segment, an event, a stage or a topic
offers the same list. Each is one bounded query, read when an editor's document is built."""

from __future__ import annotations

import datetime as dt

from django.core.cache import cache

from crm import clock
from crm.kinds import kind_source_register
from crm.models import Event, Segment, Stage, Topic

EVENTS_SEEN_DAYS = 90  # "recent": what staff are likely to build on
EVENTS_CACHE_SECONDS = 300  # the names change rarely; the scan reads 90 days of events
SOURCE_LIMIT = 500


def segments() -> list[tuple[object, str]]:
    """Segments by id (ready-made templates left out: they are copied, not used)."""
    rows = Segment.objects.filter(is_template=False).order_by("name").values_list("pk", "name")
    return list(rows[:SOURCE_LIMIT])


def events() -> list[tuple[object, str]]:
    """The distinct event names seen in the last EVENTS_SEEN_DAYS days (cached for a few
    minutes: every editor page asks, and the query reads that many days of events)."""

    def names() -> list[str]:
        since = clock.now() - dt.timedelta(days=EVENTS_SEEN_DAYS)
        rows = (
            Event.objects.filter(occurred_at__gte=since)
            .order_by("name")
            .values_list("name", flat=True)
            .distinct()
        )
        return list(rows[:SOURCE_LIMIT])

    return [
        (name, name) for name in cache.get_or_set("crm:kinds:events", names, EVENTS_CACHE_SECONDS)
    ]


def stages() -> list[tuple[object, str]]:
    return [(value, str(label)) for value, label in Stage.choices]


def date_fields() -> list[tuple[object, str]]:
    """The contact dates a yearly trigger can follow (attributes.<name> is typed in)."""
    return [("birthday", "Birthday"), ("created_at", "Signup date")]


def topics() -> list[tuple[object, str]]:
    """Topics by slug, as consent and triggers name them."""
    return list(Topic.objects.order_by("name").values_list("slug", "name")[:SOURCE_LIMIT])


def register() -> None:
    kind_source_register("segments", segments)
    kind_source_register("events", events)
    kind_source_register("stages", stages)
    kind_source_register("topics", topics)
    kind_source_register("date_fields", date_fields)
