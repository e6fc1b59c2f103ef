"""The ledger: grants, debits (redeem, clawback, staff adjustments down) and expiry, for
points and for store credit per currency, each exactly once per idempotency key.

A debit locks the contact's spendable grants of that unit (FOR UPDATE, oldest expiry
first) and takes from them in that order, recording an Allocation per grant. Two debits
of the same contact serialise on those row locks and the second sees what the first
left: a balance is never spent twice. Every write is keyed: the same key again returns
the first entry and moves nothing."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet, Sum

from crm import clock
from crm.db import bulk_update_rows, insert_ignore_returning
from crm.errors import KeepersError
from crm.models import Contact, Order
from crm.services.changes import changes_mark_contacts
from loyalty.models import POINTS, Allocation, LedgerEntry

Type = LedgerEntry.Type
ZERO = Decimal("0")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class InsufficientBalance(KeepersError):
    status_code = 409


def unit_check(unit: str) -> str:
    if unit != POINTS and not _CURRENCY.match(unit or ""):
        raise KeepersError(
            'The unit is "points" or a 3-letter currency code (EUR, USD…).', field="currency"
        )
    return unit


def amount_check(amount: Decimal | int, unit: str, field: str = "amount") -> Decimal:
    value = Decimal(amount)
    if not value.is_finite() or value <= 0:
        raise KeepersError("The amount must be more than zero.", field=field)
    if unit == POINTS and value != value.to_integral_value():
        raise KeepersError("Points are whole numbers.", field=field)
    if unit != POINTS and value != value.quantize(Decimal("0.0001")):
        raise KeepersError("At most 4 decimal places.", field=field)
    return value


# At most a century: the expiry must stay a storable date.
EXPIRES_IN_DAYS_MAX = 36_500


def grant_window(
    *,
    expires_at: dt.datetime | None = None,
    expires_in_days: int | None = None,
    redeemable_from: dt.datetime | None = None,
    now: dt.datetime,
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """A grant's (expires_at, redeemable_from) from what staff, a campaign step or the API
    give: a fixed expiry *or* a duration from `now`, and the date the redeem window opens
    (it closes at the expiry). Refused with the field named: both an expiry and a
    duration, a duration out of 1…36,500 days, an expiry already past or not after the
    window opens. `ledger_grant` checks the same again; this is the one place the
    editors and the API turn their fields into its arguments."""
    if expires_in_days is not None:
        if expires_at:
            raise KeepersError(
                "Give expires_at or expires_in_days, not both.", field="expires_in_days"
            )
        if (
            isinstance(expires_in_days, bool)
            or not isinstance(expires_in_days, int)
            or not 1 <= expires_in_days <= EXPIRES_IN_DAYS_MAX
        ):
            raise KeepersError(
                f"expires_in_days is a whole number from 1 to {EXPIRES_IN_DAYS_MAX:,}.",
                field="expires_in_days",
            )
        expires_at = now + dt.timedelta(days=expires_in_days)
    if expires_at and expires_at <= now:
        raise KeepersError("The expiry is already past.", field="expires_at")
    if expires_at and redeemable_from and expires_at <= redeemable_from:
        raise KeepersError("It must expire after it becomes redeemable.", field="expires_at")
    return expires_at, redeemable_from


def _existing(contact: Contact, unit: str, key: str) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(contact=contact, unit=unit, idempotency_key=key).first()


def ledger_grant(
    *,
    contact: Contact,
    unit: str,
    amount: Decimal | int,
    reason: str,
    key: str,
    type: str = Type.EARN,
    expires_at: dt.datetime | None = None,
    redeemable_from: dt.datetime | None = None,
    source_type: str = "",
    source_id: str = "",
    order: Order | None = None,
    staff_user=None,
    now: dt.datetime | None = None,
) -> tuple[LedgerEntry, bool]:
    """Add value. Returns (entry, created); the same key again returns the first entry."""
    unit_check(unit)
    value = amount_check(amount, unit)
    if not reason.strip():
        raise KeepersError("Give a reason.", field="reason")
    if expires_at and redeemable_from and expires_at <= redeemable_from:
        raise KeepersError("It must expire after it becomes redeemable.", field="expires_at")
    now = now or clock.now()
    if expires_at and expires_at <= now:
        raise KeepersError("The expiry is already past.", field="expires_at")
    previous = _existing(contact, unit, key)
    if previous is not None:
        return previous, False
    try:
        with transaction.atomic():
            entry = LedgerEntry.objects.create(
                contact=contact,
                unit=unit,
                type=type,
                amount=value,
                remaining=value,
                expires_at=expires_at,
                redeemable_from=redeemable_from,
                reason=reason[:300],
                source_type=source_type,
                source_id=str(source_id),
                order=order,
                staff_user=staff_user,
                idempotency_key=key,
                created_at=now,
            )
    except IntegrityError:  # the same key, concurrently: the first one stands
        return _existing(contact, unit, key), False
    changes_mark_contacts([contact.pk], "loyalty")  # segments on balances re-check it
    return entry, True


@dataclass(frozen=True)
class Grant:
    """One row for `ledger_grants`: value in (amount > 0), or a zero entry that records,
    under its key, that something was looked at and earned nothing (and why, in `reason`)."""

    contact_id: int
    unit: str
    amount: Decimal | int
    reason: str
    key: str
    type: str = Type.EARN
    expires_at: dt.datetime | None = None
    source_type: str = ""
    source_id: str = ""
    order_id: int | None = None


_GRANT_FIELDS = [
    "contact",
    "unit",
    "type",
    "amount",
    "remaining",
    "expires_at",
    "reason",
    "source_type",
    "source_id",
    "order",
    "idempotency_key",
    "shortfall",
    "created_at",
]


def ledger_grants(grants: list[Grant], *, now: dt.datetime | None = None) -> set[tuple]:
    """Many grants in one INSERT … ON CONFLICT DO NOTHING, each exactly once per
    (contact, unit, key) as `ledger_grant` does; zero amounts are allowed here, as the
    record that something earned nothing. Returns the (contact_id, unit, key) of the rows
    this call created (a concurrent or earlier call's rows stand). A grant here has no
    redeem window and never an expiry already past: the caller decides what to do with
    value that would expire at once."""
    if not grants:
        return set()
    now = now or clock.now()
    rows = []
    for grant in grants:
        unit_check(grant.unit)
        value = Decimal(grant.amount)
        if value != 0:
            value = amount_check(value, grant.unit)
        if not grant.reason.strip():
            raise KeepersError("Give a reason.", field="reason")
        if grant.expires_at and grant.expires_at <= now:
            raise KeepersError("The expiry is already past.", field="expires_at")
        rows.append(
            [
                grant.contact_id,
                grant.unit,
                grant.type,
                value,
                value,
                grant.expires_at,
                grant.reason[:300],
                grant.source_type,
                str(grant.source_id),
                grant.order_id,
                grant.key,
                ZERO,
                now,
            ]
        )
    created = {
        (contact_id, unit, key)
        for contact_id, unit, key in insert_ignore_returning(
            LedgerEntry,
            _GRANT_FIELDS,
            rows,
            conflict=["contact", "unit", "idempotency_key"],
            returning=["contact", "unit", "idempotency_key"],
        )
    }
    changes_mark_contacts({contact_id for contact_id, _, _ in created}, "loyalty")
    return created


def _spendable(contact_id: int, unit: str, now: dt.datetime) -> QuerySet[LedgerEntry]:
    """Grants with value left that may be spent now, oldest expiry first (no expiry last)."""
    return (
        LedgerEntry.objects.filter(contact_id=contact_id, unit=unit)
        .spendable(now)
        .order_by(F("expires_at").asc(nulls_last=True), "pk")
    )


def ledger_debit(
    *,
    contact: Contact,
    unit: str,
    amount: Decimal | int,
    reason: str,
    key: str,
    type: str = Type.REDEEM,
    partial: bool = False,
    first_from: list[int] | None = None,
    source_type: str = "",
    source_id: str = "",
    order: Order | None = None,
    staff_user=None,
    now: dt.datetime | None = None,
) -> tuple[LedgerEntry, bool]:
    """Take value, oldest-expiring grants first (or `first_from` grants before the rest).
    More than the balance: refused with a 409 — or, with `partial`, what there is is taken
    and the rest recorded as the entry's shortfall (a clawback never fails)."""
    unit_check(unit)
    value = amount_check(amount, unit)
    if not reason.strip():
        raise KeepersError("Give a reason.", field="reason")
    now = now or clock.now()
    previous = _existing(contact, unit, key)
    if previous is not None:
        return previous, False
    try:
        with transaction.atomic():
            grants = list(_spendable(contact.pk, unit, now).select_for_update())
            if first_from:
                preferred = set(first_from)
                grants.sort(key=lambda g: g.pk not in preferred)  # stable: expiry order kept
            available = sum((g.remaining for g in grants), ZERO)
            if value > available and not partial:
                raise InsufficientBalance(
                    f"Not enough {_unit_name(unit)}: {_fmt(available, unit)} available, "
                    f"{_fmt(value, unit)} asked.",
                    code="insufficient_balance",
                    field="amount",
                    details={"field": "amount", "available": str(available)},
                )
            take = min(value, available)
            entry = LedgerEntry.objects.create(
                contact=contact,
                unit=unit,
                type=type,
                amount=-take if take else ZERO,
                remaining=ZERO,
                reason=reason[:300],
                source_type=source_type,
                source_id=str(source_id),
                order=order,
                staff_user=staff_user,
                idempotency_key=key,
                shortfall=value - take,
                created_at=now,
            )
            _allocate(entry, grants, take)
            changes_mark_contacts([contact.pk], "loyalty")
    except IntegrityError:
        previous = _existing(contact, unit, key)
        if previous is None:
            raise
        return previous, False
    return entry, True


def _allocate(entry: LedgerEntry, grants: list[LedgerEntry], take: Decimal) -> None:
    allocations, touched = [], []
    left = take
    for grant_entry in grants:
        if left <= 0:
            break
        part = min(grant_entry.remaining, left)
        grant_entry.remaining -= part
        left -= part
        allocations.append(Allocation(debit=entry, grant=grant_entry, amount=part))
        touched.append(grant_entry)
    Allocation.objects.bulk_create(allocations)
    bulk_update_rows(touched, ["remaining"])


def ledger_expire_due(*, now: dt.datetime | None = None, chunk: int = 1000) -> int:
    """Write an expiry entry for what is left of every grant past its expiry, in chunks
    (a handful of statements per chunk). Grants a redemption holds right now are skipped
    and picked up by the next run. Returns how many grants expired."""
    now = now or clock.now()
    total = 0
    while True:
        with transaction.atomic():
            grants = list(
                LedgerEntry.objects.select_for_update(skip_locked=True)
                .due_to_expire(now)
                .order_by("pk")[:chunk]
            )
            if not grants:
                return total
            entries = [
                LedgerEntry(
                    contact_id=g.contact_id,
                    unit=g.unit,
                    type=Type.EXPIRE,
                    amount=-g.remaining,
                    remaining=ZERO,
                    reason=f"Expired on {g.expires_at:%Y-%m-%d}",
                    source_type="grant",
                    source_id=str(g.pk),
                    idempotency_key=f"expire:{g.pk}",
                    created_at=now,
                )
                for g in grants
            ]
            LedgerEntry.objects.bulk_create(entries)
            Allocation.objects.bulk_create(
                Allocation(debit=e, grant=g, amount=g.remaining)
                for e, g in zip(entries, grants, strict=True)
            )
            for g in grants:
                g.remaining = ZERO
            bulk_update_rows(grants, ["remaining"])
            changes_mark_contacts({g.contact_id for g in grants}, "loyalty")
            total += len(grants)


@dataclass
class Balance:
    unit: str
    available: Decimal  # may be spent now
    pending: Decimal  # granted, redeemable later (a redeem window)
    expiring: list[dict]  # [{"expires_at", "amount"}] of what is available, soonest first

    def as_dict(self) -> dict:
        return {
            "unit": self.unit,
            "available": _out(self.available, self.unit),
            "pending": _out(self.pending, self.unit),
            "expiring": [
                {"expires_at": e["expires_at"], "amount": _out(e["amount"], self.unit)}
                for e in self.expiring
            ],
        }


def ledger_balances(contact: Contact, *, now: dt.datetime | None = None) -> dict[str, Balance]:
    """Per unit: what may be spent now, what becomes redeemable later, and when the
    available value expires — from the grants' remaining amounts (one query)."""
    now = now or clock.now()
    live = LedgerEntry.objects.filter(contact=contact).open(now)
    result: dict[str, Balance] = {}
    for row in (
        live.values("unit", "expires_at", "redeemable_from")
        .annotate(amount=Sum("remaining"))
        .order_by("unit", F("expires_at").asc(nulls_last=True))
    ):
        balance = result.setdefault(row["unit"], Balance(row["unit"], ZERO, ZERO, []))
        if row["redeemable_from"] and row["redeemable_from"] > now:
            balance.pending += row["amount"]
            continue
        balance.available += row["amount"]
        if row["expires_at"]:
            if balance.expiring and balance.expiring[-1]["expires_at"] == row["expires_at"]:
                balance.expiring[-1]["amount"] += row["amount"]
            else:
                balance.expiring.append({"expires_at": row["expires_at"], "amount": row["amount"]})
    return result


def ledger_sum(contact: Contact, unit: str) -> Decimal:
    """The sum of every entry: equals the remaining of all grants, expired ones at zero."""
    return (
        LedgerEntry.objects.filter(contact=contact, unit=unit).aggregate(s=Sum("amount"))["s"]
        or ZERO
    )


def _unit_name(unit: str) -> str:
    return "points" if unit == POINTS else f"store credit in {unit}"


def _fmt(value: Decimal, unit: str) -> str:
    return f"{int(value)}" if unit == POINTS else f"{value:.2f} {unit}"


def _out(value: Decimal, unit: str) -> int | str:
    return int(value) if unit == POINTS else f"{value:.2f}"
