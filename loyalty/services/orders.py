"""What loyalty does when orders are placed: points and the first-order bonus, tiers, and
referrals — for one order (the live path) or a batch of thousands (a bulk placement, an
import, the demo), with a constant number of queries per chunk of orders.

The rules, the same for one order or many:

- An order in a currency with an earn rule gets exactly one earn entry, keyed by the
  order: its points at the multiplier of the tier the contact holds when it is judged,
  expiring the rule's months after the order was *placed*; or a zero entry that says why
  it earns nothing — its points would already have expired when it was recorded (a
  back-dated order), it was refunded in full first, or it rounds to no points. Granting
  points that are void on arrival would open a hole: a refund would then take the
  "earned" points back from the customer's other points. The zero entry marks the order
  as seen, so the reconcile never retries it and a refund of it takes nothing.
- An order in a currency without an earn rule earns nothing and records nothing (a rule
  added later applies from then on); its tier, bonus and referral are judged all the same.
- The first-order bonus goes once per contact (keyed by the contact, so an earlier order
  that arrives late earns no second one) with their earliest order, unless that order was
  refunded in full or is so old that bonus points given then would have expired by now.
- A batch is judged as if its orders had been placed one by one, oldest first (ordered_at,
  then id): each earns at the tier the orders before it reached (upgrades at once,
  downgrades on the review day only), so a bulk import earns what the same orders placed
  live would have. Then each contact's tier is recomputed once (one TierChange for the
  batch rather than one per step), and referrals are judged on the orders that can change
  one.

Concurrency: each chunk runs in one transaction that first locks its contacts
(`crm.db.lock_contacts`, pk order, as every writer of a contact does), so two batches with
the same contact — or a batch and a live order — take turns and the second sees what the
first wrote; every entry is keyed, so running a batch again writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from django.db import transaction
from django.db.models import Exists, Min, OuterRef, Q

from crm import clock
from crm.db import lock_contacts
from crm.models import Contact, Order, OrderStatus, Refund
from loyalty.models import POINTS, BonusRule, ContactTier, EarnRule, LedgerEntry, Referral, Tier
from loyalty.services.ledger import Grant, ledger_grants
from loyalty.services.points import add_months, order_clawback, points_for
from loyalty.services.referrals import referral_order_placed
from loyalty.services.tiers import (
    base_currency,
    qualified_tier,
    review_day,
    tier_values,
    tiers_recompute,
    window_start,
)

Basis = Tier.Basis
CHUNK = 500  # orders per transaction
FIRST_ORDER_KEY = "first-order:contact:{}"  # bonus_grant's keys are "bonus:" + this


def orders_placed(*, order_ids: Iterable[int], now: dt.datetime | None = None) -> dict[str, int]:
    """Points, the first-order bonus, tiers and referrals for these orders (see the
    module's rules), in chunks of about CHUNK orders that keep each contact's orders
    together. Orders gone meanwhile (their contact was erased) are skipped. Returns
    counts: orders judged, earned (orders given points), nothing (zero entries written),
    bonuses."""
    now = now or clock.now()
    counts = {"orders": 0, "earned": 0, "nothing": 0, "bonuses": 0}
    for chunk in _chunks_by_contact(sorted(set(order_ids))):
        for key, value in _placed_chunk(chunk, now).items():
            counts[key] += value
    return counts


def order_earn(*, order: Order, now: dt.datetime | None = None) -> LedgerEntry | None:
    """One order's points and first-order bonus by the same rules, without the tier and
    referral updates that follow in orders_placed: the order's earn entry when it earned
    points, else None."""
    _placed_chunk([order.pk], now or clock.now(), earn_only=True)
    return LedgerEntry.objects.filter(
        order_id=order.pk, unit=POINTS, type=LedgerEntry.Type.EARN, amount__gt=0
    ).first()


def _chunks_by_contact(ids: list[int]) -> Iterable[list[int]]:
    by_contact: dict[int, list[int]] = defaultdict(list)
    for start in range(0, len(ids), 10_000):
        for contact_id, pk in Order.objects.filter(pk__in=ids[start : start + 10_000]).values_list(
            "contact_id", "pk"
        ):
            by_contact[contact_id].append(pk)
    chunk: list[int] = []
    for contact_id in sorted(by_contact):
        chunk += by_contact[contact_id]
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@transaction.atomic
def _placed_chunk(ids: list[int], now: dt.datetime, earn_only: bool = False) -> dict[str, int]:
    contacts = set(lock_contacts(Q(pk__in=Order.objects.filter(pk__in=ids).values("contact_id"))))
    orders = list(
        Order.objects.filter(pk__in=ids, contact_id__in=contacts).order_by("ordered_at", "pk")
    )
    if not orders:
        return {}
    counts = _earn(orders, sorted(contacts), now)
    if earn_only:
        return counts
    tiers_recompute(contact_ids=sorted(contacts), now=now)
    _referrals(orders, sorted(contacts), now)
    return {**counts, "orders": len(orders)}


def _earn(orders: list[Order], contact_ids: list[int], now: dt.datetime) -> dict[str, int]:
    """Write the orders' earn entries and first-order bonuses, judging them oldest first
    with each contact's tier carried from one order to the next."""
    rules = {rule.currency: rule for rule in EarnRule.objects.order_by("pk")}
    bonus_rule = BonusRule.objects.filter(kind=BonusRule.Kind.FIRST_ORDER, active=True).first()
    # the months bonus points last, as bonus_grant reads them
    bonus_months = next((r.expiry_months for r in rules.values() if r.expiry_months), None)
    done = set(
        LedgerEntry.objects.filter(
            contact_id__in=contact_ids,
            unit=POINTS,
            idempotency_key__in=[f"order:{o.pk}" for o in orders],
        ).values_list("order_id", flat=True)
    )
    fresh = [o for o in orders if o.pk not in done]
    tiers = _Tiers(fresh, contact_ids, now)
    first_at: dict[int, dt.datetime] = {}
    bonused: set[int] = set()
    if bonus_rule is not None:
        first_at = dict(
            Order.objects.filter(contact_id__in=contact_ids)
            .order_by()
            .values("contact_id")
            .annotate(first=Min("ordered_at"))
            .values_list("contact_id", "first")
        )
        bonused = set(
            LedgerEntry.objects.filter(
                contact_id__in=contact_ids,
                unit=POINTS,
                source_type="bonus",
                idempotency_key__startswith="bonus:first-order:",
            ).values_list("contact_id", flat=True)
        )
    grants: list[Grant] = []
    counts = {"earned": 0, "nothing": 0, "bonuses": 0}
    for order in fresh:
        points = 0
        rule = rules.get(order.currency)
        if rule is not None:
            grant = _order_grant(order, rule, tiers.multiplier(order.contact_id), now)
            points = int(grant.amount)
            grants.append(grant)
            counts["earned" if points else "nothing"] += 1
        bonus = 0
        if (
            bonus_rule is not None
            and order.contact_id not in bonused
            and order.ordered_at == first_at.get(order.contact_id)
        ):
            bonused.add(order.contact_id)  # the earliest one, once, even if it earns none
            too_old = bonus_months and add_months(order.ordered_at, bonus_months) <= now
            if order.status != OrderStatus.REFUNDED and not too_old:
                bonus = bonus_rule.points
                grants.append(
                    Grant(
                        contact_id=order.contact_id,
                        unit=POINTS,
                        amount=bonus,
                        reason=f"Bonus: {bonus_rule.get_kind_display()}",
                        key="bonus:" + FIRST_ORDER_KEY.format(order.contact_id),
                        expires_at=add_months(now, bonus_months) if bonus_months else None,
                        source_type="bonus",
                        source_id=str(bonus_rule.pk),
                    )
                )
                counts["bonuses"] += 1
        tiers.after(order, points + bonus)
    ledger_grants(grants, now=now)
    return counts


def _order_grant(order: Order, rule: EarnRule, multiplier: Decimal, now: dt.datetime) -> Grant:
    expires = add_months(order.ordered_at, rule.expiry_months) if rule.expiry_months else None
    points, why = 0, ""
    if order.status == OrderStatus.REFUNDED:
        why = ", refunded in full before they were given"
    elif expires is not None and expires <= now:
        why = f", they expired on {expires:%Y-%m-%d} before the order was recorded"
    else:
        points = max(points_for(order.total, rule, multiplier), 0)
    return Grant(
        contact_id=order.contact_id,
        unit=POINTS,
        amount=points,
        reason=f"Order {order.external_id}"
        if points
        else f"Order {order.external_id}: no points{why}",
        key=f"order:{order.pk}",
        expires_at=expires if points else None,
        source_type="order",
        source_id=str(order.pk),
        order_id=order.pk,
    )


class _Tiers:
    """Each contact's tier as the orders of a batch are judged one by one: what
    tiers_recompute would make of it after each order, without a query per order."""

    def __init__(self, fresh: list[Order], contact_ids: list[int], now: dt.datetime) -> None:
        self.tiers = list(Tier.objects.order_by("rank"))
        self.held: dict[int, Tier | None] = {}
        self.values: dict[int, dict[str, Decimal]] = {}
        if not self.tiers:
            return
        by_pk = {t.pk: t for t in self.tiers}
        self.held = {
            contact_id: by_pk.get(tier_id)
            for contact_id, tier_id in ContactTier.objects.filter(
                contact_id__in=contact_ids
            ).values_list("contact_id", "tier_id")
        }
        self.values = tier_values(contact_ids, now)
        self.start, self.now, self.base = window_start(now), now, base_currency()
        self.downgrade = review_day(now)
        for order in fresh:  # already stored, so already in the spend: take it out
            self.values[order.contact_id][Basis.SPEND] -= self._spend(order)

    def _spend(self, order: Order) -> Decimal:
        counts = order.currency == self.base and self.start < order.ordered_at <= self.now
        return order.total - order.refunded_total if counts else Decimal("0")

    def multiplier(self, contact_id: int) -> Decimal:
        tier = self.held.get(contact_id)
        return tier.multiplier if tier is not None else Decimal("1")

    def after(self, order: Order, points: int) -> None:
        if not self.tiers:
            return
        values = self.values[order.contact_id]
        values[Basis.SPEND] += self._spend(order)
        values[Basis.POINTS] += points
        target = qualified_tier(values, self.tiers)
        held = self.held.get(order.contact_id)
        if self.downgrade or (target.rank if target else -1) > (held.rank if held else -1):
            self.held[order.contact_id] = target


def _referrals(orders: list[Order], contact_ids: list[int], now: dt.datetime) -> None:
    """referral_order_placed for the orders that can change a referral: those of friends
    whose referral waits for a first order, and those carrying a code (on the order, or in
    the contact's identify traits) of contacts not referred yet. Two queries, then one
    call per such order."""
    status = dict(
        Referral.objects.filter(friend_id__in=contact_ids).values_list("friend_id", "status")
    )
    unreferred = [pk for pk in contact_ids if pk not in status]
    with_code = (
        set(
            Contact.objects.filter(
                pk__in=unreferred, attributes__has_key="referral_code"
            ).values_list("pk", flat=True)
        )
        if unreferred
        else set()
    )
    for order in orders:
        waiting = status.get(order.contact_id) == Referral.Status.SIGNED_UP
        coded = order.contact_id not in status and (
            order.contact_id in with_code or order.attributes.get("referral_code")
        )
        if waiting or coded:
            referral_order_placed(order=order, now=now)
            status.setdefault(order.contact_id, Referral.Status.SIGNED_UP)


def points_reconcile(*, days: int = 7, now: dt.datetime | None = None) -> dict[str, int]:
    """What a lost task left undone: orders of the last `days` days in a currency with a
    points rule but no earn entry (every such order gets one, a zero one when it earns
    nothing, so an order is retried only until it has been judged once), and refunds with
    no clawback entry. Each is keyed, so running this any number of times grants and
    takes back exactly once."""
    now = now or clock.now()
    since = now - dt.timedelta(days=days)
    currencies = list(EarnRule.objects.values_list("currency", flat=True))
    missed = list(
        Order.objects.filter(ordered_at__gte=since, currency__in=currencies)
        .exclude(
            Exists(
                LedgerEntry.objects.filter(
                    order=OuterRef("pk"), unit=POINTS, type=LedgerEntry.Type.EARN
                )
            )
        )
        .values_list("pk", flat=True)
    )
    placed = orders_placed(order_ids=missed, now=now)
    clawed = 0
    # refunds are few; order_clawback is keyed by the refund and takes only what is due
    for refund in Refund.objects.filter(created_at__gte=since, order__currency__in=currencies):
        clawed += order_clawback(refund=refund, now=now) is not None
    return {"checked": placed["orders"], "earned": placed["earned"], "clawed_back": clawed}
