"""The one clock. Everything that asks "what time is it" asks here, so tests (time-machine
in-process; KEEPERS_CLOCK_FILE across processes, for end-to-end tests with real workers)
and the demo can move time for the whole system at once."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.utils import timezone

_offset_cache: dict[str, tuple[tuple, float]] = {}


def now() -> datetime:
    current = timezone.now()
    path = settings.KEEPERS_CLOCK_FILE
    if path:
        current += timedelta(seconds=_offset(path))
    return current


def shop_zone() -> ZoneInfo:
    """The shop's time zone (KEEPERS_SHOP_TIME_ZONE): its days, months and reports."""
    return ZoneInfo(settings.KEEPERS_SHOP_TIME_ZONE)


def zone_named(name: str) -> ZoneInfo:
    """A contact's time zone by its name; the shop's when there is none (or this system
    does not know it)."""
    if not name:
        return shop_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return shop_zone()


def contact_zone(contact) -> ZoneInfo:
    """Where the contact's "today" and "10:00" are: their zone, else the shop's."""
    return zone_named(contact.timezone)


def _offset(path: str) -> float:
    """Seconds to add, read from the file (re-read when it changes; writers replace the
    file atomically, so a half-written file is never read)."""
    try:
        stat = os.stat(path)
    except OSError:
        return 0.0
    mtime = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
    cached = _offset_cache.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    try:
        with open(path) as handle:
            value = float(handle.read().strip() or 0)
    except (OSError, ValueError):
        value = 0.0
    _offset_cache[path] = (mtime, value)
    return value
