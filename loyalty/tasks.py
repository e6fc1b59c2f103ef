"""Celery entry points for loyalty: thin and idempotent (every write is keyed).

One direction for task dispatch, in every app: services import the `*_task` they enqueue
at module level, and a task imports its service when it runs (the function-level imports
below), so no import cycle joins a service and its task."""

from __future__ import annotations

from celery import shared_task

from crm.models import Refund


@shared_task(name="loyalty.tasks.orders_placed")
def orders_placed_task(order_ids: list[int]) -> dict:
    """Points, bonus, tiers and referrals for a batch of placed orders, set-based (one
    task per chunk of a bulk placement, never one per order)."""
    from loyalty.services.orders import orders_placed  # services import tasks, not back

    return orders_placed(order_ids=order_ids)


@shared_task(name="loyalty.tasks.order_placed")
def order_placed_task(order_id: int) -> dict:
    """One order (the name queued before batches existed; the same service)."""
    from loyalty.services.orders import orders_placed  # services import tasks, not back

    return orders_placed(order_ids=[order_id])


@shared_task(name="loyalty.tasks.order_refunded")
def order_refunded_task(refund_id: int) -> None:
    # services import tasks, not back: the task reads its services when it runs
    from loyalty.services.coupons import coupon_release
    from loyalty.services.points import order_clawback
    from loyalty.services.referrals import referral_order_refunded
    from loyalty.services.tiers import tiers_recompute

    refund = Refund.objects.select_related("order").filter(pk=refund_id).first()
    if refund is not None:  # gone with its order when the contact was erased
        order_clawback(refund=refund)
        tiers_recompute(contact_ids=[refund.order.contact_id])  # downgrades wait for the review
        referral_order_refunded(order=refund.order)
        coupon_release(order=refund.order)


@shared_task(name="loyalty.tasks.event_bonus")
def event_bonus_task(event_id: int, contact_id: int, name: str) -> None:
    from loyalty.services.points import event_bonus  # services import tasks, not back

    event_bonus(event_id=event_id, contact_id=contact_id, name=name)


@shared_task(name="loyalty.tasks.birthday_bonuses")
def birthday_bonuses_task() -> int:
    from loyalty.services.points import birthday_bonuses  # services import tasks, not back

    return birthday_bonuses()


@shared_task(name="loyalty.tasks.expire_due")
def expire_due_task() -> int:
    from loyalty.services.ledger import ledger_expire_due  # services import tasks, not back

    return ledger_expire_due()


@shared_task(name="loyalty.tasks.referrals_reward_due")
def referrals_reward_due_task() -> int:
    from loyalty.services.referrals import referrals_reward_due  # services import tasks, not back

    return referrals_reward_due()


@shared_task(name="loyalty.tasks.tiers_recompute")
def tiers_recompute_task() -> dict:
    """Nightly: everyone's tier; downgrades only on the review day."""
    from loyalty.services.tiers import tiers_recompute  # services import tasks, not back

    return tiers_recompute()


@shared_task(name="loyalty.tasks.reconcile")
def reconcile_task(days: int = 7) -> dict:
    """Nightly: redo what a lost task left undone (loyalty.services.orders.points_reconcile)."""
    from loyalty.services.orders import points_reconcile  # services import tasks, not back

    return points_reconcile(days=days)
