"""crm.limits: the one rate-limit helper, on the cache production uses (Redis) and the
per-process one of development and tests."""

import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.cache import cache

from crm.limits import RateLimited, first_use, limit_take, rate_parse

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def takes(n: int, **kwargs) -> list[bool]:
    allowed = []
    for _ in range(n):
        try:
            limit_take(**kwargs)
            allowed.append(True)
        except RateLimited:
            allowed.append(False)
    return allowed


@pytest.mark.parametrize(
    "rate, parsed",
    [("10/hour", (10, 3600)), ("3/day", (3, 86400)), ("5/second", (5, 1)), ("off", None)],
)
def test_rates_read_as_the_settings_write_them(rate, parsed):
    assert rate_parse(rate) == parsed


@pytest.mark.parametrize("rate", ["10", "ten/hour", "10/fortnight", "", "-1/hour"])
def test_a_rate_that_is_not_one_is_refused(rate):
    with pytest.raises(ValueError):
        rate_parse(rate)


def test_keys_and_scopes_are_counted_apart_in_windows_from_their_first_request():
    with time_machine.travel(T0 + timedelta(minutes=59), tick=False) as clock:
        assert takes(3, scope="a", key="1.2.3.4", rate="2/hour") == [True, True, False]
        assert takes(1, scope="a", key="5.6.7.8", rate="2/hour") == [True]
        assert takes(1, scope="b", key="1.2.3.4", rate="2/hour") == [True]
        clock.shift(timedelta(minutes=59, seconds=30))  # past the clock hour, not the window
        with pytest.raises(RateLimited) as refused:
            limit_take(scope="a", key="1.2.3.4", rate="2/hour")
        assert (refused.value.retry_after, refused.value.retry_minutes) == (30, 1)
        assert refused.value.status_code == 429 and refused.value.code == "rate_limited"
        clock.shift(timedelta(seconds=31))
        assert takes(3, scope="a", key="1.2.3.4", rate="2/hour") == [True, True, False]
    assert takes(50, scope="a", key="x", rate="off") == [True] * 50


def test_keys_hold_no_address():
    limit_take(scope="subscribe:address", key="private@example.com", rate="3/day")
    keys = list(cache._cache.keys())  # locmem's store
    assert keys and not any("private" in key for key in keys)


def test_an_unavailable_cache_lets_requests_through(settings, caplog):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }
    assert takes(3, scope="a", key="k", rate="1/hour") == [True] * 3
    assert "the cache is unavailable" in caplog.text
    assert first_use(scope="form", key="n", timeout=60) is True


@pytest.mark.redis
def test_on_redis_concurrent_requests_take_exactly_the_allowed_places(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            # its own keys (expiring within the hour): never a flush of a shared database
            "KEY_PREFIX": f"test-limits-{os.getpid()}-{time.time_ns()}",
        }
    }
    allowed, barrier = [], threading.Barrier(8)

    def worker():
        barrier.wait()
        allowed.extend(takes(25, scope="race", key="198.51.100.1", rate="37/hour"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 200 and allowed.count(True) == 37
    assert first_use(scope="form", key="nonce", timeout=60) is True
    assert first_use(scope="form", key="nonce", timeout=60) is False
