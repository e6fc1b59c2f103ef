"""Celery entry points for loyalty: thin and idempotent (every write is keyed)."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.db.models import Exists, OuterRef

from crm import clock
from crm.models import Order, Refund
from loyalty.models import EarnRule, LedgerEntry
from loyalty.services.coupons import coupon_release
from loyalty.services.ledger import expire_due
from loyalty.services.points import birthday_bonuses, event_bonus, order_clawback, order_earn
from loyalty.services.referrals import (
    referral_order_placed,
    referral_order_refunded,
    referrals_reward_due,
)
from loyalty.services.tiers import tiers_recompute


@shared_task(name="loyalty.tasks.order_placed")
def order_placed_task(order_id: int) -> None:
    order = Order.objects.filter(pk=order_id).first()
    if order is not None:
        order_earn(order=order)  # first: a points tier needs the new points
        tiers_recompute(contact_ids=[order.contact_id])  # upgrades at once
        referral_order_placed(order=order)


@shared_task(name="loyalty.tasks.order_refunded")
def order_refunded_task(refund_id: int) -> None:
    refund = Refund.objects.filter(pk=refund_id).first()
    if refund is not None:
        order_clawback(refund=refund)
        tiers_recompute(contact_ids=[refund.order.contact_id])  # downgrades wait for the review
        referral_order_refunded(order=refund.order)
        coupon_release(order=refund.order)


@shared_task(name="loyalty.tasks.event_bonus")
def event_bonus_task(event_id: int, contact_id: int, name: str) -> None:
    event_bonus(event_id=event_id, contact_id=contact_id, name=name)


@shared_task(name="loyalty.tasks.birthday_bonuses")
def birthday_bonuses_task() -> int:
    return birthday_bonuses()


@shared_task(name="loyalty.tasks.expire_due")
def expire_due_task() -> int:
    return expire_due()


@shared_task(name="loyalty.tasks.referrals_reward_due")
def referrals_reward_due_task() -> int:
    return referrals_reward_due()


@shared_task(name="loyalty.tasks.tiers_recompute")
def tiers_recompute_task() -> dict:
    """Nightly: everyone's tier; downgrades only on the review day."""
    return tiers_recompute()


@shared_task(name="loyalty.tasks.reconcile")
def reconcile_task(days: int = 7) -> dict:
    """What a lost task left undone: orders of the last `days` days in a currency with a
    points rule but no points entry, and refunds with no clawback entry. Each is keyed,
    so running this any number of times grants and takes back exactly once."""
    since = clock.now() - dt.timedelta(days=days)
    currencies = list(EarnRule.objects.values_list("currency", flat=True))
    missed = Order.objects.filter(
        ordered_at__gte=since, currency__in=currencies, total__gt=0
    ).exclude(Exists(LedgerEntry.objects.filter(order=OuterRef("pk"), type="earn")))
    earned = 0
    for order in missed.iterator(chunk_size=500):
        earned += order_earn(order=order) is not None
    clawed = 0
    # refunds are few; order_clawback is keyed by the refund and takes only what is due
    for refund in Refund.objects.filter(created_at__gte=since, order__currency__in=currencies):
        clawed += order_clawback(refund=refund) is not None
    return {"earned": earned, "clawed_back": clawed}
