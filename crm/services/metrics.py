"""Lifecycle metrics: retention, churn, net revenue
retention, CAC, CSAT and NPS, historic CLV, cohort retention and the lifecycle funnel.

Definitions (the admin and the API documentation quote these):

- Periods are whole days [start, end] in shop time (KEEPERS_SHOP_TIME_ZONE): from `start`
  00:00 to the midnight that closes `end`.
- A contact is a *customer at date d* when they have at least one order on or before d and
  their last order on or before d is within the active window before d
  (KEEPERS_ACTIVE_WINDOW_DAYS, 365 by default): with the default, the 365 days d-364 … d.
- S = customers at the start of the period (at the close of the day before `start`, so a
  first order on `start` counts in N, not in S); E = customers at `end`; N = customers whose
  first order falls in the period.
- Retention rate CRR = (E − N) / S × 100; churn rate = (S − (E − N)) / S × 100, so
  CRR + churn = 100. CRR can exceed 100 when lapsed customers come back.
- Net revenue retention NRR = net revenue in the period from the S customers ÷ the same
  customers' net revenue in the preceding period of equal length × 100.
- CAC = marketing and sales spend in the period ÷ N, overall and per acquisition channel
  (Contact.channel). Spend is entered per channel and month; a month only partly inside
  the period counts pro rata by days.
- CSAT = answers 4–5 ÷ answers to CSAT surveys (1–5) × 100; NPS = % promoters (9–10) −
  % detractors (0–6) of the answers to NPS surveys (0–10), answered in the period.
- Historic CLV = a customer's net revenue to date (to the end of the period); averaged over
  customers (contacts with an order on or before the end) per acquisition cohort and
  channel; CLV : CAC = that channel's average historic CLV ÷ its CAC in the period.

Money: net revenue is `total − refunded_total` of each order, attributed to the order's date.
Only orders (and spend entries) in KEEPERS_BASE_CURRENCY count for revenue, spend, CAC and
CLV figures; counting customers (S, E, N, cohorts, repeat purchases) uses all orders.

Everything is computed in SQL aggregates (one pass over the orders per figure group, never a
Python loop over contacts or orders), on PostgreSQL and on SQLite: the few expressions the
two write differently (a month in shop time, a median) come from the helpers below. Results are cached per (function, arguments) in
Django's cache under a generation number; placing or refunding an order bumps the
generation (`metrics_cache_connect`), and entries expire after CACHE_SECONDS anyway, since
spend, survey answers and events also move the figures.
"""

from __future__ import annotations

import hashlib
import time as _time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery, Value
from django.db.models.functions import Concat, StrIndex, Substr

from crm import bus, clock
from crm.db import db_datetime
from crm.errors import KeepersError, NotFound
from crm.models import (
    Contact,
    Event,
    MarketingSpend,
    Order,
    Segment,
    SegmentMembership,
    Stage,
    StageChange,
)
from crm.services.events import SURVEY_ANSWERED, SURVEY_SOURCE

CACHE_PREFIX = "keepers:metrics"
GENERATION_KEY = f"{CACHE_PREFIX}:generation"
CACHE_SECONDS = 3600
MAX_COHORT_MONTHS = 120
# The summary's per-contact aggregate streams from the covering index crm_order_contact_time
# in contact order into a merge join with the contacts. With parallel workers PostgreSQL 15
# plans each worker to redo the whole aggregate (3× the work on 2 cores, 1.4 s against 1.1 s
# at 1.5M orders), so that statement runs without them.
SUMMARY_PG_SETTINGS = {"max_parallel_workers_per_gather": "0"}
CENT = Decimal("0.01")
ZERO = Decimal("0")


# Figures that come from the apps above crm, which crm does not import: each registers a
# counter over an instant range [t_s, t_e) from its AppConfig.ready() (loyalty:
# "referrals", referrals made). A figure with no counter registered is None.
MetricSource = Callable[[datetime, datetime], int]
METRIC_SOURCES: dict[str, MetricSource] = {}
METRIC_SOURCE_NAMES = ("referrals",)


def metrics_source_register(name: str, source: MetricSource) -> None:
    if name not in METRIC_SOURCE_NAMES:
        raise ValueError(f"Unknown metric source {name!r}; known: {', '.join(METRIC_SOURCE_NAMES)}")
    METRIC_SOURCES[name] = source


# --- cache ----------------------------------------------------------------------------------


def _generation() -> int:
    value = cache.get(GENERATION_KEY)
    if value is None:
        # A fresh number, not 1: entries written under an evicted generation stay unreachable.
        cache.add(GENERATION_KEY, _time.time_ns(), timeout=None)
        value = cache.get(GENERATION_KEY)
    return value


def metrics_cache_invalidate(*_message: object) -> None:
    """Make every cached figure stale (a bus handler, so it takes and ignores messages)."""
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:  # no generation yet, or evicted: any new number will do
        cache.add(GENERATION_KEY, _time.time_ns(), timeout=None)


def metrics_cache_connect() -> None:
    """Subscribe the cache to order changes; called once from crm's AppConfig.ready(). A
    batch subscription: a bulk placement makes the figures stale once, not once an order
    (the demo's seed did it 6,378 times)."""
    bus.subscribe_batch(bus.OrderPlaced, metrics_cache_invalidate)
    bus.subscribe_batch(bus.OrderRefunded, metrics_cache_invalidate)


def _cached(name: str, arguments: tuple, compute: Callable[[], dict]) -> dict:
    digest = hashlib.sha256(repr(arguments).encode()).hexdigest()[:32]
    key = f"{CACHE_PREFIX}:{_generation()}:{name}:{digest}"
    result = cache.get(key)
    if result is None:
        result = compute()
        cache.set(key, result, timeout=CACHE_SECONDS)
    return result


# --- helpers --------------------------------------------------------------------------------


def active_window_days() -> int:
    return settings.KEEPERS_ACTIVE_WINDOW_DAYS


def _instant(day: date) -> datetime:
    """The midnight that opens `day`, in shop time."""
    return datetime.combine(day, time.min, tzinfo=clock.shop_zone())


def _today() -> date:
    return clock.now().astimezone(clock.shop_zone()).date()


def _month_add(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _pct(part: float | Decimal, whole: float | Decimal) -> float | None:
    if not whole:
        return None
    return round(float(Decimal(part) * 100 / Decimal(whole)), 2)


def _money(value: Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(value).quantize(CENT)


def _ratio(value: Decimal | None, by: Decimal | None) -> float | None:
    if value is None or not by:
        return None
    return round(float(value / by), 2)


def _check_period(start: date, end: date) -> None:
    if end < start:
        raise KeepersError("The period ends before it starts.", field="end")


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@dataclass(frozen=True)
class _Filters:
    """Which contacts a summary covers: acquired through `channel`, current members of
    segment `segment_id`, currently in lifecycle `stage` (None: no restriction)."""

    channel: str | None = None
    segment_id: int | None = None
    stage: str | None = None


def _contact_filter(filters: _Filters) -> tuple[str, dict]:
    """SQL restricting `contact_id` to the filtered contacts, and its parameters."""
    channel, segment_id = filters.channel, filters.segment_id
    conditions, params = [], {}
    if channel is not None:
        conditions.append("c.channel = %(channel)s")
        params["channel"] = channel
    if filters.stage is not None:
        conditions.append("c.stage = %(stage)s")
        params["stage"] = filters.stage
    if segment_id is not None:
        conditions.append(
            f"EXISTS (SELECT 1 FROM {_table(SegmentMembership)} m WHERE m.contact_id = c.id "
            "AND m.segment_id = %(segment)s AND m.exited_at IS NULL)"
        )
        params["segment"] = segment_id
    if not conditions:
        return "", params
    where = " AND ".join(conditions)
    return f"AND o.contact_id IN (SELECT c.id FROM {_table(Contact)} c WHERE {where})", params


def _postgresql() -> bool:
    return connection.vendor == "postgresql"


def _day(value: date) -> object:
    return connection.ops.adapt_datefield_value(value)


def _as_date(value: object) -> date | None:
    """A date from what the database returns for a day or a truncated month."""
    if value is None or type(value) is date:
        return value
    if isinstance(value, datetime):
        return value.date()
    return date.fromisoformat(str(value)[:10])


def _month_sql(column: str) -> str:
    """SQL for the first instant of `column`'s month in shop time (parameter %(tz)s, see
    `_tz_params`), as a timestamp without zone (PostgreSQL) or text (SQLite)."""
    if _postgresql():
        return f"date_trunc('month', {column} AT TIME ZONE %(tz)s)"
    return f"django_datetime_trunc('month', {column}, %(tz)s, %(db_tz)s)"


def _tz_params() -> dict:
    return {"tz": settings.KEEPERS_SHOP_TIME_ZONE, "db_tz": connection.timezone_name}


def _second_part(field: str):
    """The second ':'-separated part of a text column ("b" of "a:b:c"), in expressions
    both databases run (also inside subqueries, where tables are aliased)."""
    rest = Substr(field, StrIndex(field, Value(":")) + 1)
    return Substr(rest, 1, StrIndex(Concat(rest, Value(":")), Value(":")) - 1)


def _fetch(sql: str, params: dict, *, pg_settings: dict[str, str] | None = None) -> list[dict]:
    """Rows as dicts. `pg_settings` are PostgreSQL planner settings for the rest of the
    transaction (SET LOCAL; one is opened when none is, without a savepoint otherwise);
    ignored elsewhere. SQLite returns sums of decimals as floats: they come back as Decimal."""
    pg_settings = pg_settings if _postgresql() else None
    scope = transaction.atomic(savepoint=False) if pg_settings else nullcontext()
    with scope, connection.cursor() as cursor:
        for name, value in (pg_settings or {}).items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
        cursor.execute(sql, params)
        columns = [col[0] for col in cursor.description]
        rows = cursor.fetchall()
    if not _postgresql():
        rows = [
            [Decimal(repr(value)) if isinstance(value, float) else value for value in row]
            for row in rows
        ]
    return [dict(zip(columns, row, strict=True)) for row in rows]


# --- summary --------------------------------------------------------------------------------


def metrics_summary(
    start: date,
    end: date,
    *,
    channel: str | None = None,
    segment_id: int | None = None,
    stage: str | None = None,
) -> dict:
    """S, E, N, CRR, churn, NRR, revenue, spend, CAC, historic CLV, CLV:CAC, CSAT and NPS for
    [start, end], overall and per acquisition channel (see the module's definitions).

    `channel` keeps contacts acquired through that channel (and its spend); `segment_id`
    keeps the segment's current members; `stage` the contacts now in that lifecycle stage.
    Spend is not attributed to segments or stages, so with either `spend`, `cac` and
    `clv_cac` are None. Revenue, spend, CAC and CLV count only orders and spend in
    KEEPERS_BASE_CURRENCY; customer counts use all orders."""
    _check_period(start, end)
    if stage is not None and stage not in Stage.values:
        raise KeepersError(
            f"Unknown stage {stage!r}; one of {', '.join(Stage.values)}.", field="stage"
        )
    filters = _Filters(channel, segment_id, stage)
    return _cached(
        "summary",
        (
            start,
            end,
            filters,
            active_window_days(),
            settings.KEEPERS_BASE_CURRENCY,
            settings.KEEPERS_SHOP_TIME_ZONE,
        ),
        lambda: _summary(start, end, filters),
    )


def _summary(start: date, end: date, filters: _Filters) -> dict:
    channel, segment_id = filters.channel, filters.segment_id
    if segment_id is not None and not Segment.objects.filter(pk=segment_id).exists():
        raise NotFound(f"No segment #{segment_id}.", field="segment")
    length = end - start + timedelta(days=1)
    rows = _customer_rows(start, end, filters)
    unattributed = segment_id is not None or filters.stage is not None
    spend = None if unattributed else _spend_by_channel(start, end, channel)
    by_channel = {row["channel"]: row for row in rows}
    names = sorted(set(by_channel) | set(spend or {}))
    empty = dict.fromkeys(
        ("s", "e", "n", "to_date", "repeat", "orders", "gross", "refunded", "nrr_now"), 0
    ) | {"nrr_prev": ZERO, "clv_total": ZERO}
    channels = [
        _figures(by_channel.get(name, empty), None if spend is None else spend.get(name, ZERO))
        | {"channel": name}
        for name in names
    ]
    total = {key: sum(row[key] for row in rows) for key in empty}
    overall = _figures(total, None if spend is None else sum(spend.values(), ZERO))
    return {
        "period": {
            "start": start,
            "end": end,
            "previous_start": start - length,
            "previous_end": start - timedelta(days=1),
        },
        "filters": {"channel": channel, "segment": segment_id, "stage": filters.stage},
        "active_window_days": active_window_days(),
        "currency": settings.KEEPERS_BASE_CURRENCY,
        **overall,
        "surveys": _surveys(start, end, filters),
        "channels": [{key: row[key] for key in ("channel", *CHANNEL_FIELDS)} for row in channels],
    }


CHANNEL_FIELDS = (
    "customers",
    "retention_rate",
    "churn_rate",
    "revenue",
    "spend",
    "cac",
    "average_clv",
    "clv_cac",
)


def _figures(row: dict, spend: Decimal | None) -> dict:
    """The derived figures of one row of sums (a channel, or all of them)."""
    s, e, n = row["s"], row["e"], row["n"]
    crr = _pct(e - n, s)
    cac = None if spend is None or not n else spend / n
    average_clv = row["clv_total"] / row["to_date"] if row["to_date"] else None
    return {
        "customers": {
            "start": s,
            "end": e,
            "new": n,
            "to_date": row["to_date"],
            "repeat": row["repeat"],
        },
        "retention_rate": crr,
        # 100 − CRR after rounding, so the two published figures add up to exactly 100.
        "churn_rate": None if crr is None else round(100 - crr, 2),
        "net_revenue_retention": {
            "rate": _pct(row["nrr_now"], row["nrr_prev"]),
            "revenue": _money(row["nrr_now"]),
            "previous_revenue": _money(row["nrr_prev"]),
        },
        "revenue": {
            "orders": row["orders"],
            "gross": _money(row["gross"]),
            "refunded": _money(row["refunded"]),
            "net": _money(row["gross"] - row["refunded"]),
        },
        "spend": _money(spend),
        "cac": _money(cac),
        "average_clv": _money(average_clv),
        "clv_cac": _ratio(average_clv, cac),
    }


def _customer_rows(start: date, end: date, filters: _Filters) -> list[dict]:
    """Per acquisition channel, in one pass over the orders up to the end of the period:
    S, E, N, customers to date, repeat customers (≥ 2 orders to date), the period's orders
    and base-currency gross / refunded revenue, NRR's numerator and denominator (S
    customers' net revenue in this and the preceding period) and net revenue to date."""
    t_s, t_e = _instant(start), _instant(end + timedelta(days=1))
    window = timedelta(days=active_window_days())
    contacts_sql, params = _contact_filter(filters)
    params |= {
        "t_s": db_datetime(t_s),
        "t_e": db_datetime(t_e),
        "p_s": db_datetime(_instant(start - (end - start + timedelta(days=1)))),
        "s_window": db_datetime(t_s - window),
        "e_window": db_datetime(t_e - window),
        "currency": settings.KEEPERS_BASE_CURRENCY,
    }
    base = "o.currency = %(currency)s"
    net = "o.total - o.refunded_total"
    rows = _fetch(
        f"""
        WITH per AS (
          SELECT o.contact_id,
                 MIN(o.ordered_at) AS first_at,
                 MAX(o.ordered_at) AS last_at,
                 MAX(o.ordered_at) FILTER (WHERE o.ordered_at < %(t_s)s) AS last_before_start,
                 COUNT(*) AS orders_to_date,
                 COUNT(*) FILTER (WHERE o.ordered_at >= %(t_s)s) AS orders,
                 SUM(o.total) FILTER (WHERE o.ordered_at >= %(t_s)s AND {base}) AS gross,
                 SUM(o.refunded_total) FILTER (WHERE o.ordered_at >= %(t_s)s AND {base})
                   AS refunded,
                 SUM({net}) FILTER (
                   WHERE o.ordered_at >= %(p_s)s AND o.ordered_at < %(t_s)s AND {base}
                 ) AS previous_net,
                 SUM({net}) FILTER (WHERE {base}) AS net_to_date
          FROM {_table(Order)} o
          WHERE o.ordered_at < %(t_e)s {contacts_sql}
          GROUP BY o.contact_id
        ), flagged AS (
          SELECT c.channel, p.*,
                 COALESCE(p.last_before_start >= %(s_window)s, false) AS in_s
          FROM per p JOIN {_table(Contact)} c ON c.id = p.contact_id
        )
        SELECT channel,
               COUNT(*) FILTER (WHERE in_s) AS s,
               COUNT(*) FILTER (WHERE last_at >= %(e_window)s) AS e,
               COUNT(*) FILTER (WHERE first_at >= %(t_s)s) AS n,
               COUNT(*) AS to_date,
               COUNT(*) FILTER (WHERE orders_to_date >= 2) AS repeat,
               COALESCE(SUM(orders), 0) AS orders,
               COALESCE(SUM(gross), 0) AS gross,
               COALESCE(SUM(refunded), 0) AS refunded,
               COALESCE(SUM(gross - refunded) FILTER (WHERE in_s), 0) AS nrr_now,
               COALESCE(SUM(previous_net) FILTER (WHERE in_s), 0) AS nrr_prev,
               COALESCE(SUM(net_to_date), 0) AS clv_total
        FROM flagged
        GROUP BY channel
        ORDER BY channel
        """,
        params,
        pg_settings=SUMMARY_PG_SETTINGS,
    )
    for row in rows:  # SQLite sums whole amounts as integers
        for key in ("gross", "refunded", "nrr_now", "nrr_prev", "clv_total"):
            row[key] = Decimal(row[key])
    return rows


def _spend_by_channel(start: date, end: date, channel: str | None) -> dict[str, Decimal]:
    """Base-currency spend per channel in [start, end]; a month partly inside the period
    counts for the share of its days that are inside. Summed per channel and month in SQL,
    prorated here (a row per channel and month: a few hundred at most)."""
    after = end + timedelta(days=1)
    params: dict = {
        "first": _day(start.replace(day=1)),
        "after": _day(after),
        "currency": settings.KEEPERS_BASE_CURRENCY,
    }
    only = ""
    if channel is not None:
        only, params["channel"] = "AND s.channel = %(channel)s", channel
    rows = _fetch(
        f"""
        SELECT s.channel, s.month, SUM(s.amount) AS amount
        FROM {_table(MarketingSpend)} s
        WHERE s.currency = %(currency)s AND s.month >= %(first)s AND s.month < %(after)s {only}
        GROUP BY s.channel, s.month
        """,
        params,
    )
    spend: dict[str, Decimal] = {}
    for row in rows:
        month = _as_date(row["month"])
        following = _month_add(month, 1)
        inside = (min(following, after) - max(month, start)).days
        share = Decimal(inside) / Decimal((following - month).days)
        spend[row["channel"]] = spend.get(row["channel"], ZERO) + Decimal(row["amount"]) * share
    return spend


def _surveys(start: date, end: date, filters: _Filters) -> dict:
    """CSAT and NPS over the answers given in the period, read from the crm events that
    record them ("Survey Answered": survey, kind, score, ref): crm owns what it measures.

    An answer is one contact's answer to one send of a survey (survey, ref); a changed
    score records a newer event, so an answer's score is its newest event's and it was
    given when its first event occurred. Only the events Keepers' own survey pages record
    count (SURVEY_SOURCE and their message ids, "survey-answer:<answer>:<score>:<time>";
    an integrator's "Survey Answered" is behaviour, not our survey), and an answer is
    known by the <answer> in its message id, so a renamed survey's answers stay one."""
    answered = Event.objects.filter(
        name=SURVEY_ANSWERED,
        source=SURVEY_SOURCE,
        message_id__startswith="survey-answer:",
        contact__isnull=False,
    ).annotate(answer=_second_part("message_id"))
    same_answer = answered.filter(answer=OuterRef("answer"))
    newer = same_answer.filter(
        Q(occurred_at__gt=OuterRef("occurred_at"))
        | Q(occurred_at=OuterRef("occurred_at"), pk__gt=OuterRef("pk"))
    )
    first_at = same_answer.order_by("occurred_at").values("occurred_at")[:1]
    answers = (
        answered.filter(~Exists(newer))
        .annotate(answered_at=Subquery(first_at))
        .filter(answered_at__gte=_instant(start), answered_at__lt=_instant(end + timedelta(days=1)))
    )
    if filters.channel is not None:
        answers = answers.filter(contact__channel=filters.channel)
    if filters.stage is not None:
        answers = answers.filter(contact__stage=filters.stage)
    if filters.segment_id is not None:
        answers = answers.filter(
            contact__memberships__segment_id=filters.segment_id,
            contact__memberships__exited_at__isnull=True,
        )
    csat, nps = Q(properties__kind="csat"), Q(properties__kind="nps")
    counts = answers.aggregate(
        csat_answers=Count("pk", filter=csat),
        satisfied=Count("pk", filter=csat & Q(properties__score__gte=4, properties__score__lte=5)),
        nps_answers=Count("pk", filter=nps),
        promoters=Count("pk", filter=nps & Q(properties__score__gte=9)),
        detractors=Count("pk", filter=nps & Q(properties__score__lte=6)),
    )
    n = counts["nps_answers"]
    promoters, detractors = counts["promoters"], counts["detractors"]
    return {
        "csat": {
            "score": _pct(counts["satisfied"], counts["csat_answers"]),
            "answers": counts["csat_answers"],
            "satisfied": counts["satisfied"],
        },
        "nps": {
            "score": _pct(promoters - detractors, n),
            "answers": n,
            "promoters": promoters,
            "passives": n - promoters - detractors,
            "detractors": detractors,
        },
    }


# --- cohorts --------------------------------------------------------------------------------


def cohorts(months: int = 24, *, end: date | None = None) -> dict:
    """Monthly acquisition cohorts (the month of a customer's first order, shop time) for
    the `months` months up to `end`'s month (today by default) × months since the first
    order: customers who ordered in that month, as counts and as a percentage of the
    cohort, and net revenue per cohort and month (KEEPERS_BASE_CURRENCY only; counts use
    all orders). Orders after `end` are left out. Average historic CLV per cohort = the
    cohort's net revenue to `end` ÷ its customers."""
    if not 1 <= months <= MAX_COHORT_MONTHS:
        raise KeepersError(f"months must be between 1 and {MAX_COHORT_MONTHS}.", field="months")
    end = end or _today()
    return _cached(
        "cohorts",
        (months, end, settings.KEEPERS_BASE_CURRENCY, settings.KEEPERS_SHOP_TIME_ZONE),
        lambda: _cohorts(months, end),
    )


def _cohorts(months: int, end: date) -> dict:
    last = end.replace(day=1)
    first = _month_add(last, -(months - 1))
    # One walk over the orders in (contact, time) order, which the covering index
    # crm_order_contact_time gives without a sort: each order learns its contact's first
    # month (the cohort) and the month of the contact's previous order, so a contact counts
    # once per month (the month's first order) with no grouping per contact and month.
    rows = _fetch(
        f"""
        WITH months AS (
          SELECT o.contact_id, o.ordered_at, {_month_sql("o.ordered_at")} AS month,
                 CASE WHEN o.currency = %(currency)s THEN o.total - o.refunded_total END AS net
          FROM {_table(Order)} o
          WHERE o.ordered_at < %(t_e)s
        ), tagged AS (
          SELECT month, net,
                 first_value(ordered_at) OVER w AS first_at,
                 first_value(month) OVER w AS cohort,
                 lag(month) OVER w AS previous_month
          FROM months
          WINDOW w AS (PARTITION BY contact_id ORDER BY ordered_at)
        )
        SELECT cohort, month,
               COUNT(*) FILTER (WHERE previous_month IS NULL OR previous_month <> month)
                 AS customers,
               COALESCE(SUM(net), 0) AS net
        FROM tagged
        WHERE first_at >= %(t_first)s
        GROUP BY cohort, month
        """,
        {
            **_tz_params(),
            "t_first": db_datetime(_instant(first)),
            "t_e": db_datetime(_instant(end + timedelta(days=1))),
            "currency": settings.KEEPERS_BASE_CURRENCY,
        },
    )
    cells = {}
    for row in rows:
        cohort, month = _as_date(row["cohort"]), _as_date(row["month"])
        age = (month.year - cohort.year) * 12 + month.month - cohort.month
        cells[(cohort, age)] = row
    table = []
    for k in range(months):  # cohorts × ages: at most MAX_COHORT_MONTHS², no row per contact
        cohort = _month_add(first, k)
        ages = range(months - k)
        active = [
            cells[(cohort, age)]["customers"] if (cohort, age) in cells else 0 for age in ages
        ]
        revenue = [cells[(cohort, age)]["net"] if (cohort, age) in cells else ZERO for age in ages]
        size, total = active[0], sum(revenue, ZERO)
        table.append(
            {
                "cohort": cohort,
                "customers": size,
                "active": active,
                "percent": [_pct(count, size) for count in active],
                "revenue": _money(total),
                "revenue_by_month": [_money(value) for value in revenue],
                "average_clv": _money(total / size) if size else None,
            }
        )
    return {
        "months": months,
        "end": end,
        "currency": settings.KEEPERS_BASE_CURRENCY,
        "cohorts": table,
    }


# --- funnel ---------------------------------------------------------------------------------


def funnel(start: date, end: date) -> dict:
    """The lifecycle funnel for [start, end]:

    - stages: contacts per stage today; per month of the period, contacts per stage at the
      month's close (from the StageChange history), new contacts, and the transitions
      between stages with their rate = moves from A to B in the month ÷ contacts in A at
      the month's opening × 100;
    - reach: visitors (distinct contacts, or anonymous ids, with a `Page Viewed` event in
      the period), page views, bounce rate = visitors with a single page view ÷ visitors;
    - acquisition: signup rate = new subscribers (contacts created in the period) ÷ visitors;
    - conversion: of the contacts created in the period, the share with a first order by
      the end of the period, and the median days from signup to that first order;
    - retention: CRR and churn (as in the summary); repeat-purchase rate = customers with
      two or more orders ÷ customers (contacts with an order on or before `end`);
    - loyalty: NPS, average historic CLV, referral rate = referrals made in the period ÷ E
      (customers at the end of the period)."""
    _check_period(start, end)
    today = _today()
    return _cached(
        "funnel",
        (start, end, today, active_window_days(), settings.KEEPERS_SHOP_TIME_ZONE),
        lambda: _funnel(start, end),
    )


def _funnel(start: date, end: date) -> dict:
    summary = metrics_summary(start, end)
    t_s, t_e = _instant(start), _instant(end + timedelta(days=1))
    reach = _reach(t_s, t_e)
    conversion = _conversion(t_s, t_e)
    customers = summary["customers"]
    referrals = _referrals(t_s, t_e)
    return {
        "period": {"start": start, "end": end},
        "stages": _stages_today(),
        "months": _stages_by_month(start, end),
        "reach": reach,
        "acquisition": {
            "new_subscribers": conversion["new_subscribers"],
            "visitors": reach["visitors"],
            "signup_rate": _pct(conversion["new_subscribers"], reach["visitors"]),
        },
        "conversion": conversion,
        "retention": {
            "retention_rate": summary["retention_rate"],
            "churn_rate": summary["churn_rate"],
            "customers": customers["to_date"],
            "repeat_customers": customers["repeat"],
            "repeat_purchase_rate": _pct(customers["repeat"], customers["to_date"]),
        },
        "loyalty": {
            "nps": summary["surveys"]["nps"]["score"],
            "nps_answers": summary["surveys"]["nps"]["answers"],
            "average_clv": summary["average_clv"],
            "currency": summary["currency"],
            "referrals": referrals,
            "referral_rate": None if referrals is None else _pct(referrals, customers["end"]),
        },
    }


def _stages_today() -> list[dict]:
    counts = dict(Contact.objects.order_by().values_list("stage").annotate(n=Count("pk")))
    return [
        {"stage": value, "label": str(label), "contacts": counts.get(value, 0)}
        for value, label in Stage.choices
    ]


def _stages_by_month(start: date, end: date) -> list[dict]:
    """Per calendar month overlapping the period (clipped to it): contacts per stage at its
    close, new contacts and the transitions inside it, with their rates.

    StageChange is a ledger: every contact's history starts with a change from "" at its
    creation, and each later change leaves the stage the previous one entered (the
    services write them so). Contacts in a stage at time t are therefore the changes
    before t into it minus those out of it: one grouped scan, no per-contact replay."""
    months, month = [], start.replace(day=1)
    while month <= end:
        months.append(month)
        month = _month_add(month, 1)
    after = end + timedelta(days=1)
    moves = _fetch(
        f"""
        SELECT CASE WHEN sc.at < %(t_s)s THEN NULL ELSE {_month_sql("sc.at")} END AS month,
               sc.from_stage, sc.to_stage, COUNT(*) AS contacts
        FROM {_table(StageChange)} sc
        WHERE sc.at < %(t_e)s
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3
        """,
        {**_tz_params(), "t_s": db_datetime(_instant(start)), "t_e": db_datetime(_instant(after))},
    )
    for row in moves:
        row["month"] = _as_date(row["month"])
    stages = [value for value, _label in Stage.choices]
    counts = dict.fromkeys(stages, 0)

    def apply(rows: list[dict]) -> None:
        for row in rows:
            counts[row["to_stage"]] = counts.get(row["to_stage"], 0) + row["contacts"]
            if row["from_stage"]:
                counts[row["from_stage"]] = counts.get(row["from_stage"], 0) - row["contacts"]

    apply([row for row in moves if row["month"] is None])  # the opening of the period
    result = []
    for month in months:  # a handful of months × at most 7 × 8 stage pairs
        opening = dict(counts)
        inside = [row for row in moves if row["month"] == month]
        apply(inside)
        result.append(
            {
                "month": month,
                "start": max(month, start),
                "end": min(_month_add(month, 1), after) - timedelta(days=1),
                "stages": {stage: counts[stage] for stage in stages},
                "new_contacts": sum(row["contacts"] for row in inside if not row["from_stage"]),
                "transitions": [
                    {
                        "from_stage": row["from_stage"],
                        "to_stage": row["to_stage"],
                        "contacts": row["contacts"],
                        "rate": _pct(row["contacts"], opening.get(row["from_stage"], 0)),
                    }
                    for row in inside
                    if row["from_stage"]
                ],
            }
        )
    return result


def _reach(t_s: datetime, t_e: datetime) -> dict:
    """Visitors are contacts, or anonymous ids when the event has no contact yet."""
    rows = _fetch(
        f"""
        SELECT COALESCE(SUM(views), 0) AS page_views,
               COUNT(*) FILTER (WHERE visitor IS NOT NULL) AS visitors,
               COUNT(*) FILTER (WHERE visitor IS NOT NULL AND views = 1) AS single_page
        FROM (
          SELECT COALESCE('c' || CAST(e.contact_id AS TEXT), 'a' || NULLIF(e.anonymous_id, ''))
                   AS visitor,
                 COUNT(*) AS views
          FROM {_table(Event)} e
          WHERE e.name = 'Page Viewed' AND e.occurred_at >= %(t_s)s AND e.occurred_at < %(t_e)s
          GROUP BY 1
        ) v
        """,
        {"t_s": db_datetime(t_s), "t_e": db_datetime(t_e)},
    )
    row = rows[0]
    return {
        "visitors": row["visitors"],
        "page_views": int(row["page_views"]),
        "single_page_visitors": row["single_page"],
        "bounce_rate": _pct(row["single_page"], row["visitors"]),
    }


def _conversion(t_s: datetime, t_e: datetime) -> dict:
    """Contacts created in the period → first order by its end. Days are counted from
    signup; an order placed before the contact was recorded (a guest checkout, an import)
    counts as day 0."""
    # The first order per new contact: an index lookup each (crm_order_contact_time).
    firsts = f"""
        SELECT c.created_at,
               (SELECT MIN(o.ordered_at) FROM {_table(Order)} o
                WHERE o.contact_id = c.id AND o.ordered_at < %(t_e)s) AS first_at
        FROM {_table(Contact)} c
        WHERE c.created_at >= %(t_s)s AND c.created_at < %(t_e)s
    """
    params = {"t_s": db_datetime(t_s), "t_e": db_datetime(t_e)}
    if _postgresql():
        row = _fetch(
            f"""
            SELECT COUNT(*) AS new_subscribers,
                   COUNT(f.first_at) AS first_orders,
                   PERCENTILE_CONT(0.5) WITHIN GROUP (
                     ORDER BY GREATEST(EXTRACT(EPOCH FROM f.first_at - f.created_at), 0) / 86400
                   ) FILTER (WHERE f.first_at IS NOT NULL) AS median_days
            FROM ({firsts}) f
            """,
            params,
        )[0]
    else:  # no PERCENTILE_CONT: the middle one or two of the sorted days
        row = _fetch(
            f"SELECT COUNT(*) AS new_subscribers, COUNT(f.first_at) AS first_orders "
            f"FROM ({firsts}) f",
            params,
        )[0]
        n = row["first_orders"]
        middle = _fetch(
            f"""
            SELECT MAX(julianday(f.first_at) - julianday(f.created_at), 0) AS days
            FROM ({firsts}) f WHERE f.first_at IS NOT NULL
            ORDER BY days LIMIT %(count)s OFFSET %(skip)s
            """,
            params | {"count": 2 - n % 2, "skip": (n - 1) // 2},
        )
        row["median_days"] = sum(Decimal(r["days"]) for r in middle) / len(middle) if n else None
    median = row["median_days"]
    return {
        "new_subscribers": row["new_subscribers"],
        "first_orders": row["first_orders"],
        "rate": _pct(row["first_orders"], row["new_subscribers"]),
        "median_days": None if median is None else round(float(median), 2),
    }


def _referrals(t_s: datetime, t_e: datetime) -> int | None:
    """Referrals made in the period, as the app that runs referrals counts them (loyalty
    registers its counter); None when no app does."""
    source = METRIC_SOURCES.get("referrals")
    return None if source is None else source(t_s, t_e)
