"""Reads behind loyalty's admin pages and reports: aggregates in SQL, a fixed number of
queries each, no formatting (the admin turns them into tables, charts and CSV)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncMonth

from crm import clock
from loyalty.models import ContactTier, EarnRule, LedgerEntry, Referral, ReferralRefusal, Tier

ZERO = Decimal("0")


def open_grants_by_expiry_month(
    *, now: dt.datetime
) -> tuple[dict[dt.date | None, dict[str, Decimal]], dict[str, dict]]:
    """What is still owed: the remaining value of grants that have not expired (pending
    ones, redeemable only later, included), per expiry month in shop time (None: no
    expiry) and unit; and per unit, the outstanding and pending totals and the number of
    open grants. One aggregate query."""
    open_grants = (
        LedgerEntry.objects.open(now)
        .annotate(month=TruncMonth("expires_at", tzinfo=clock.shop_zone()))
        .order_by()
        .values("unit", "month")
        .annotate(
            outstanding=Sum("remaining"),
            pending=Sum("remaining", filter=Q(redeemable_from__gt=now), default=ZERO),
            grants=Count("pk"),
        )
    )
    by_month: dict[dt.date | None, dict[str, Decimal]] = {}
    summary: dict[str, dict] = {}
    for row in open_grants:
        month = row["month"].date() if row["month"] else None
        by_month.setdefault(month, {})[row["unit"]] = row["outstanding"]
        total = summary.setdefault(row["unit"], {"outstanding": ZERO, "pending": ZERO, "grants": 0})
        total["outstanding"] += row["outstanding"]
        total["pending"] += row["pending"]
        total["grants"] += row["grants"]
    return by_month, summary


def points_rates() -> list[tuple[str, Decimal]]:
    """(currency, store credit per point) of each earn rule, by currency."""
    return list(EarnRule.objects.order_by("currency").values_list("currency", "credit_per_point"))


def month_start(now: dt.datetime) -> dt.datetime:
    """The first instant of the current month in shop time."""
    local = now.astimezone(clock.shop_zone())
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def referral_summary(*, now: dt.datetime) -> dict:
    """Referrals by status (made this month / all time) and refusals by reason: two
    aggregate queries."""
    since = month_start(now)
    counted = {
        row["status"]: row
        for row in Referral.objects.order_by()
        .values("status")
        .annotate(total=Count("pk"), this_month=Count("pk", filter=Q(created_at__gte=since)))
    }
    statuses = [
        {
            "status": value,
            "label": label,
            "this_month": counted.get(value, {}).get("this_month", 0),
            "total": counted.get(value, {}).get("total", 0),
        }
        for value, label in Referral.Status.choices
    ]
    refusals = list(
        ReferralRefusal.objects.order_by()
        .values("reason")
        .annotate(total=Count("pk"), this_month=Count("pk", filter=Q(at__gte=since)))
        .order_by("-total", "reason")[:20]
    )
    return {
        "since": since,
        "statuses": statuses,
        "this_month": sum(s["this_month"] for s in statuses),
        "total": sum(s["total"] for s in statuses),
        "refusals": refusals,
        "refused_this_month": sum(r["this_month"] for r in refusals),
    }


def tier_distribution() -> list[tuple[str, int]]:
    """Contacts per tier, in rank order, and those tracked without one (two queries)."""
    tiers = Tier.objects.annotate(members=Count("contacttier")).order_by("rank")
    bars = [(tier.name, tier.members) for tier in tiers]
    without = ContactTier.objects.filter(tier__isnull=True).count()
    return [("No tier", without), *bars] if without else bars


def referrals_made(t_s: dt.datetime, t_e: dt.datetime) -> int:
    """Referrals made in [t_s, t_e): crm's metrics read this counter (the referral rate),
    registered from loyalty's AppConfig.ready()."""
    return Referral.objects.filter(created_at__gte=t_s, created_at__lt=t_e).count()
