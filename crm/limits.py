"""Rate limits for the public pages (the subscribe form, fresh links, survey answers, the
referral signup), the one helper every app uses: counted in Django's cache — Redis in
production, so every web process shares the counts; per-process memory in development
and tests.

A rate is a setting, "N/second", "N/minute", "N/hour", "N/day" or "off" (config/settings/
base.py, KEEPERS_RATE_*). A window opens with a key's first request and lasts the period
(the counter's expiry), so "3/day" is three in any day from the first, and the answer
says when the window closes. Each request is counted with the cache's atomic add and
incr, so concurrent requests cannot both take the last place. Keys hold a hash of what
they count (an IP, an email address), never the value itself.

If the cache cannot be reached, requests are let through and the failure is logged: a
Redis outage must not take the subscribe form down with it."""

from __future__ import annotations

import hashlib
import logging
import math

from django.core.cache import cache

from crm import clock
from crm.errors import KeepersError

log = logging.getLogger(__name__)

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class RateLimited(KeepersError):
    """Over a limit: answered 429 (a page in the customer's language on public pages, the
    JSON error in the API) with Retry-After; nothing else happens for the request."""

    status_code = 429

    def __init__(self, *, scope: str, retry_after: int) -> None:
        super().__init__(
            "Too many requests. Please try again later.",
            code="rate_limited",
            details={"scope": scope, "retry_after": retry_after},
        )
        self.scope = scope
        self.retry_after = retry_after

    @property
    def retry_minutes(self) -> int:
        return max(1, math.ceil(self.retry_after / 60))


def rate_parse(rate: str) -> tuple[int, int] | None:
    """(count, seconds) of a rate; None when it is "off"."""
    text = rate.strip().lower()
    if text == "off":
        return None
    count, _slash, period = text.partition("/")
    if not count.isdigit() or period not in PERIODS:
        raise ValueError(f"{rate!r} is not a rate: N/second, N/minute, N/hour, N/day or off.")
    return int(count), PERIODS[period]


def limit_take(*, scope: str, key: str | None, rate: str) -> None:
    """Count one request for `key` (an IP address, an email address, a contact) under
    `scope` ("subscribe:ip"), and raise RateLimited when it goes over `rate`. Call it for
    each limit of a request in turn, the client's address first: a request refused for
    its address is then not counted against the email address it named."""
    parsed = rate_parse(rate)
    if parsed is None:
        return
    allowed, seconds = parsed
    digest = hashlib.sha256(f"{scope}\0{key or 'unknown'}".encode()).hexdigest()[:32]
    counter = f"keepers:limit:{scope}:{seconds}:{digest}"
    now = clock.now().timestamp()
    try:
        count = _count(counter, started=f"{counter}:start", now=now, seconds=seconds)
        if count <= allowed:
            return
        started = cache.get(f"{counter}:start")
    except Exception:  # the cache is down: let the request through, and say so
        log.exception("rate limit %s not counted: the cache is unavailable", scope)
        return
    elapsed = now - started if isinstance(started, float) else 0
    raise RateLimited(scope=scope, retry_after=max(1, math.ceil(seconds - elapsed)))


def _count(counter: str, *, started: str, now: float, seconds: int) -> int:
    """The window opens with its first request and lasts `seconds` (the counter's expiry;
    incr keeps it); `started` remembers when, for Retry-After."""
    if cache.add(counter, 1, seconds):
        cache.set(started, now, seconds)
        return 1
    try:
        return cache.incr(counter)
    except ValueError:  # it expired between the add and the incr: a new window
        cache.add(counter, 1, seconds)
        cache.set(started, now, seconds)
        return 1


def first_use(*, scope: str, key: str, timeout: int) -> bool:
    """True the first time `key` is used under `scope` within `timeout` seconds (a
    single-use form token), False after. Fails open, as the limits do."""
    digest = hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()[:32]
    try:
        return bool(cache.add(f"keepers:once:{scope}:{digest}", 1, timeout))
    except Exception:
        log.exception("single use of a %s not checked: the cache is unavailable", scope)
        return True
