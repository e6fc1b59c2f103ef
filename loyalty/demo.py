"""The demo shop's loyalty programme, installed by `manage.py demo` (idempotent): points
in USD, three tiers, bonus rules, points for the last two months of orders, tiers for
everyone, and referral codes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from crm import clock
from crm.models import Contact, Order
from loyalty.models import BonusRule, EarnRule, ReferralCode, Tier
from loyalty.services.points import order_earn
from loyalty.services.referrals import referral_code_for
from loyalty.services.tiers import tiers_recompute


def loyalty_demo_install(say=lambda message: None) -> bool:
    if EarnRule.objects.exists():
        return False
    EarnRule.objects.create(
        currency="USD",
        points_per_unit=Decimal("1"),
        expiry_months=12,
        credit_per_point=Decimal("0.01"),
    )
    for name, rank, threshold, multiplier in (
        ("Insider", 1, Decimal("1"), Decimal("1")),
        ("VIB", 2, Decimal("350"), Decimal("1.25")),
        ("Rouge", 3, Decimal("1000"), Decimal("1.5")),
    ):
        Tier.objects.create(
            name=name, rank=rank, basis=Tier.Basis.SPEND, threshold=threshold, multiplier=multiplier
        )
    for kind, event, points in (
        (BonusRule.Kind.FIRST_ORDER, "", 100),
        (BonusRule.Kind.BIRTHDAY, "", 250),
        (BonusRule.Kind.EVENT, "Review Submitted", 50),
        (BonusRule.Kind.REFERRAL, "", 200),
    ):
        BonusRule.objects.create(kind=kind, event=event, points=points)
    recent = Order.objects.filter(ordered_at__gte=clock.now() - dt.timedelta(days=60))
    earned = sum(order_earn(order=order) is not None for order in recent.iterator())
    counts = tiers_recompute(allow_downgrade=True)
    for contact in Contact.objects.filter(orders__isnull=False).distinct().order_by("pk")[:200]:
        referral_code_for(contact)
    say(
        f"loyalty: points for {earned} recent orders, tiers for {counts['upgraded']} customers, "
        f"{ReferralCode.objects.count()} referral codes"
    )
    return True
