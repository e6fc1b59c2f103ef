"""The demo shop's loyalty programme, installed by `manage.py demo` (idempotent): points
in USD, three tiers, bonus rules, then every seeded order judged as the programme judges
orders (points, first-order bonuses, tiers: loyalty.services.orders, set-based, in chunks
of 500 orders, in this process), and referral codes. Orders older than the points expiry
are recorded as earning nothing. The seeded orders' own loyalty tasks (one per batch the
seed placed) find all of it done when the worker runs them."""

from __future__ import annotations

from decimal import Decimal

from crm.models import Contact, Order
from loyalty.models import BonusRule, ContactTier, EarnRule, ReferralCode, Tier
from loyalty.services.orders import orders_placed
from loyalty.services.referrals import referral_code_for


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
    counts = orders_placed(order_ids=Order.objects.values_list("pk", flat=True))
    for contact in Contact.objects.filter(orders__isnull=False).distinct().order_by("pk")[:200]:
        referral_code_for(contact)
    say(
        f"loyalty: points for {counts['earned']} orders, {counts['nothing']} recorded as "
        "earning none (older than the points expiry), "
        f"{counts['bonuses']} first-order bonuses, "
        f"tiers for {ContactTier.objects.exclude(tier=None).count()} customers, "
        f"{ReferralCode.objects.count()} referral codes"
    )
    return True
