"""Points: the earn rule's arithmetic (a rule per currency, the tier's multiplier,
optional expiry; orders earn through loyalty.services.orders), bonus points, clawed back
on refunds, redeemed into store credit."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from django.db import transaction
from django.db.models import Sum

from crm import clock
from crm.birthdays import celebrated_on, local_dates
from crm.errors import KeepersError
from crm.models import Contact, Order, Refund
from loyalty.models import POINTS, Allocation, BonusRule, Coupon, EarnRule, LedgerEntry
from loyalty.services.coupons import coupon_create
from loyalty.services.ledger import ledger_debit, ledger_grant

Type = LedgerEntry.Type
ROUNDING = {"down": ROUND_FLOOR, "nearest": ROUND_HALF_UP, "up": ROUND_CEILING}


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    for day in (moment.day, 30, 29, 28):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def points_for(amount: Decimal, rule: EarnRule, multiplier: Decimal = Decimal("1")) -> int:
    raw = amount * rule.points_per_unit * multiplier
    return int(raw.quantize(Decimal("1"), rounding=ROUNDING[rule.rounding]))


def bonus_grant(
    *, contact: Contact, kind: str, key: str, event: str = "", now: dt.datetime | None = None
) -> LedgerEntry | None:
    """Bonus points of the active rule for this kind (and event name), once per key.
    Returns the entry when this call granted it, None otherwise."""
    rule = BonusRule.objects.filter(kind=kind, active=True, event=event).first()
    if rule is None:
        return None
    expiry = (
        EarnRule.objects.exclude(expiry_months=None).values_list("expiry_months", flat=True).first()
    )
    now = now or clock.now()
    entry, created = ledger_grant(
        contact=contact,
        unit=POINTS,
        amount=rule.points,
        reason=f"Bonus: {rule.event or rule.get_kind_display()}",
        key=f"bonus:{key}",
        expires_at=add_months(now, expiry) if expiry else None,
        source_type="bonus",
        source_id=str(rule.pk),
        now=now,
    )
    return entry if created else None


def order_clawback(*, refund: Refund, now: dt.datetime | None = None) -> LedgerEntry | None:
    """Take back the points the refunded share of the order earned: the order's own grant
    first, then any other points. What was already spent is recorded as the entry's
    shortfall; the refund itself never fails because of points. What expired of the
    order's own points counts as taken back already: the customer lost those once, and
    other points are not taken for them (a refund that comes after the order's points
    expired, as a back-dated order's may, takes only what was spent of them)."""
    order = Order.objects.select_related("contact").filter(pk=refund.order_id).first()
    if order is None or order.total <= 0:  # gone meanwhile (its contact was erased)
        return None
    earned = LedgerEntry.objects.filter(
        order=order, unit=POINTS, type=Type.EARN, source_type="order"
    ).first()
    if earned is None or earned.amount <= 0:  # it earned nothing: nothing to take back
        return None
    share = min(order.refunded_total / order.total, Decimal("1"))
    due = int((earned.amount * share).quantize(Decimal("1"), rounding=ROUND_FLOOR))
    before = (
        LedgerEntry.objects.filter(order=order, unit=POINTS, type=Type.CLAWBACK)
        .exclude(idempotency_key=f"refund:{refund.pk}")
        .aggregate(taken=Sum("amount"), short=Sum("shortfall"))
    )
    expired = Allocation.objects.filter(grant=earned, debit__type=Type.EXPIRE).aggregate(
        s=Sum("amount")
    )["s"]
    amount = due + int(before["taken"] or 0) - int(before["short"] or 0) - int(expired or 0)
    if amount <= 0:
        return None
    entry, _ = ledger_debit(
        contact=order.contact,
        unit=POINTS,
        amount=amount,
        type=Type.CLAWBACK,
        reason=f"Refund on order {order.external_id}",
        key=f"refund:{refund.pk}",
        partial=True,
        first_from=[earned.pk],
        source_type="refund",
        source_id=str(refund.pk),
        order=order,
        now=now,
    )
    return entry


@transaction.atomic
def points_redeem_for_credit(
    *, contact: Contact, points: int, currency: str, key: str, now: dt.datetime | None = None
) -> tuple[LedgerEntry, LedgerEntry, bool]:
    """Turn points into store credit at the currency's rate, once per key. Returns the
    points debit, the credit grant, and whether this call did it."""
    rule = EarnRule.objects.filter(currency=currency).first()
    if rule is None:
        raise KeepersError(f"No points rule for {currency}.", field="currency")
    now = now or clock.now()
    spent, created = ledger_debit(
        contact=contact,
        unit=POINTS,
        amount=points,
        reason=f"Redeemed for store credit in {currency}",
        key=f"to-credit:{key}",
        source_type="redemption",
        now=now,
    )
    value = (Decimal(-spent.amount) * rule.credit_per_point).quantize(Decimal("0.01"))
    credit, _ = ledger_grant(
        contact=contact,
        unit=currency,
        amount=value,
        reason=f"{int(-spent.amount)} points redeemed",
        key=f"from-points:{key}",
        source_type="redemption",
        source_id=str(spent.pk),
        now=now,
    )
    return spent, credit, created


# --- bonus points for events and birthdays -------------------------------------------------
_EVENT_BONUSES: dict[str, object] = {"names": None}


def bonus_event_names() -> frozenset[str]:
    """The event names that earn a bonus, read once and kept until a rule changes (the
    ingestion path asks for every event: this must not be a query each time)."""
    if _EVENT_BONUSES["names"] is None:
        _EVENT_BONUSES["names"] = frozenset(
            BonusRule.objects.filter(kind=BonusRule.Kind.EVENT, active=True).values_list(
                "event", flat=True
            )
        )
    return _EVENT_BONUSES["names"]  # type: ignore[return-value]


def bonus_rules_changed(**_kwargs) -> None:
    _EVENT_BONUSES["names"] = None


def event_bonus(*, event_id: int, contact_id: int | None, name: str) -> LedgerEntry | None:
    """Bonus points for an event (a review submitted…), once per event."""
    if contact_id is None or name not in bonus_event_names():
        return None
    contact = Contact.objects.get(pk=contact_id)
    return bonus_grant(
        contact=contact, kind=BonusRule.Kind.EVENT, event=name, key=f"event:{event_id}"
    )


def birthday_bonuses(*, now: dt.datetime | None = None) -> int:
    """Birthday bonus points on the day, in each contact's own time zone (29 February on
    the 28th in other years: crm.birthdays), once a year. Run hourly; one query per local
    date finds the day's birthdays."""

    if not BonusRule.objects.filter(kind=BonusRule.Kind.BIRTHDAY, active=True).exists():
        return 0
    now = now or clock.now()
    given = 0
    for today, zones in local_dates(now).items():
        for contact in Contact.objects.filter(zones).filter(celebrated_on("birthday", today)):
            given += (
                bonus_grant(
                    contact=contact,
                    kind=BonusRule.Kind.BIRTHDAY,
                    key=f"birthday:{contact.pk}:{today.year}",
                    now=now,
                )
                is not None
            )
    return given


@transaction.atomic
def points_redeem_for_coupon(
    *, contact: Contact, points: int, currency: str, key: str, now: dt.datetime | None = None
) -> tuple[LedgerEntry, object, bool]:
    """Turn points into a single-use fixed-amount coupon bound to the contact, at the
    currency's rate, once per key. Returns the points debit, the coupon, and whether this
    call did it."""

    rule = EarnRule.objects.filter(currency=currency).first()
    if rule is None:
        raise KeepersError(f"No points rule for {currency}.", field="currency")
    now = now or clock.now()
    spent, created = ledger_debit(
        contact=contact,
        unit=POINTS,
        amount=points,
        reason=f"Redeemed for a coupon in {currency}",
        key=f"to-coupon:{key}",
        source_type="redemption",
        now=now,
    )
    source = f"points:{spent.pk}"
    coupon = Coupon.objects.filter(source_type="points", source_id=source).first()
    if coupon is None:
        coupon = coupon_create(
            kind=Coupon.Kind.FIXED,
            value=(Decimal(-spent.amount) * rule.credit_per_point).quantize(Decimal("0.01")),
            currency=currency,
            contact=contact,
            source_type="points",
            source_id=source,
            now=now,
        )
    return spent, coupon, created
