"""The one clock. Everything that asks "what time is it" asks here, so tests (time-machine)
and the demo can move time for the whole system at once."""

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()
