"""Tiers (Insider, VIB, Rouge…): earned on a rolling 12 months, never on a balance.

A contact's values at `now`, over the window (now − 12 months, now]:

- points: points *earned* — the positive `earn` entries in points (orders, bonuses,
  referrals) minus what refunds clawed back of the orders earned in the window.
  Redeeming or expiring points does not lower it.
- spend: net spend — total minus refunded total of the orders placed in the window, in
  KEEPERS_BASE_CURRENCY only (orders in other currencies are ignored: summing money of
  different currencies means nothing without a rate).

Each tier is judged on its own basis; the qualified tier is the highest-ranked one whose
threshold the contact's value on that basis reaches. Upgrades (and a first tier) apply at
once; a downgrade waits for the yearly review day (KEEPERS_TIER_REVIEW, "MM-DD" in shop
time). Every change is a TierChange row: the "tier changed" campaign trigger reads them.
"""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Case, DecimalField, Exists, F, OuterRef, Q, Sum, When

from crm import clock
from crm.db import bulk_update_rows, lock_contacts
from crm.models import Contact, Order, order_net
from loyalty.models import POINTS, ContactTier, LedgerEntry, Tier, TierChange
from loyalty.services.points import add_months

Type = LedgerEntry.Type
Basis = Tier.Basis
ZERO = Decimal("0")
CENT = Decimal("0.01")
CHUNK = 2000
MONEY = DecimalField(max_digits=16, decimal_places=4)


def base_currency() -> str:
    return settings.KEEPERS_BASE_CURRENCY  # also the currency of lifecycle's spend_12m


def window_start(now: dt.datetime) -> dt.datetime:
    """The exclusive start of the rolling 12 months that end at `now` (inclusive)."""
    return add_months(now, -12)


def tier_values(contact_ids: list[int] | None, now: dt.datetime) -> dict[int, dict[str, Decimal]]:
    """{contact_id: {"points": earned, "spend": net spend}} over (now − 12 months, now].
    Two aggregate queries whatever the number of contacts. With ids, every id is in the
    result (zeros for no activity); with None, every contact that earned points or
    ordered in the window. Spend is total − refunded total in KEEPERS_BASE_CURRENCY
    only: orders in other currencies are ignored.

    Points: a clawback counts in full (taken + shortfall) against the order it belongs
    to when that order's points were earned in the window: a refunded order earns no
    tier credit, even when its points were already spent and could not be taken back."""
    start = window_start(now)
    ids = None if contact_ids is None else sorted(set(contact_ids))
    result: dict[int, dict[str, Decimal]] = {
        pk: {Basis.POINTS: ZERO, Basis.SPEND: ZERO} for pk in ids or ()
    }
    if ids == []:
        return result
    who = Q() if ids is None else Q(contact_id__in=ids)

    earned_in_window = LedgerEntry.objects.filter(
        contact_id=OuterRef("contact_id"),
        order_id=OuterRef("order_id"),
        unit=POINTS,
        type=Type.EARN,
        source_type="order",
        created_at__gt=start,
        created_at__lte=now,
    )
    points = (
        LedgerEntry.objects.filter(who, unit=POINTS)
        .filter(
            Q(type=Type.EARN, amount__gt=0, created_at__gt=start, created_at__lte=now)
            | Q(
                Exists(earned_in_window),
                type=Type.CLAWBACK,
                order__isnull=False,
                created_at__lte=now,
            )
        )
        .order_by()
        .values("contact_id")
        .annotate(
            value=Sum(
                Case(
                    When(type=Type.EARN, then=F("amount")),
                    # amount is what was taken (negative), shortfall what could not be
                    default=F("amount") - F("shortfall"),
                    output_field=MONEY,
                )
            )
        )
        .values_list("contact_id", "value")
    )
    for contact_id, value in points:
        result.setdefault(contact_id, {Basis.POINTS: ZERO, Basis.SPEND: ZERO})
        result[contact_id][Basis.POINTS] = max(value or ZERO, ZERO).to_integral_value()

    spend = (
        Order.objects.filter(
            who, currency=base_currency(), ordered_at__gt=start, ordered_at__lte=now
        )
        .order_by()
        .values("contact_id")
        .annotate(value=Sum(order_net(), output_field=MONEY))
        .values_list("contact_id", "value")
    )
    for contact_id, value in spend:
        result.setdefault(contact_id, {Basis.POINTS: ZERO, Basis.SPEND: ZERO})
        result[contact_id][Basis.SPEND] = max(value or ZERO, ZERO)
    return result


def qualified_tier(values: dict[str, Decimal], tiers: list[Tier]) -> Tier | None:
    """The highest-ranked tier whose threshold the value on its own basis reaches."""
    for tier in sorted(tiers, key=lambda t: t.rank, reverse=True):
        if values[tier.basis] >= tier.threshold:
            return tier
    return None


def _review_month_day(year: int) -> tuple[int, int]:
    """KEEPERS_TIER_REVIEW ("MM-DD") in `year`: a 02-29 review falls on 02-28 in other
    years."""
    setting = settings.KEEPERS_TIER_REVIEW
    try:
        month, day = (int(part) for part in str(setting).split("-"))
        dt.date(2024, month, day)  # a leap year: 02-29 is valid
    except ValueError as error:
        raise ImproperlyConfigured(
            f'KEEPERS_TIER_REVIEW is the month and day of the yearly review, like "01-01"; '
            f"got {setting!r}."
        ) from error
    if (month, day) == (2, 29) and not calendar.isleap(year):
        day = 28
    return month, day


def _shop_today(now: dt.datetime) -> dt.date:
    return now.astimezone(clock.shop_zone()).date()


def review_day(now: dt.datetime) -> bool:
    """Is `now` on the yearly review day, in shop time (KEEPERS_SHOP_TIME_ZONE)?"""
    today = _shop_today(now)
    return (today.month, today.day) == _review_month_day(today.year)


def next_review(now: dt.datetime) -> dt.date:
    """The next review day, today included (shop time)."""
    today = _shop_today(now)
    for year in (today.year, today.year + 1):
        candidate = dt.date(year, *_review_month_day(year))
        if candidate >= today:
            return candidate
    raise AssertionError("unreachable")


def tiers_recompute(
    *,
    contact_ids: list[int] | None = None,
    now: dt.datetime | None = None,
    allow_downgrade: bool | None = None,
    chunk: int = CHUNK,
) -> dict:
    """Bring contacts to the tier their last 12 months earn: the given ids (after an
    order or a refund) or, with None, every contact that ordered, has points or holds a
    tier (the nightly pass). Returns {"upgraded", "downgraded", "unchanged"} counts.

    Upgrades apply at once; downgrades only when `allow_downgrade` — by default, when
    today (shop time) is the review day. A contact kept above what they qualify for has
    `qualified_value` below the tier's threshold: they lose it at the next review unless
    they earn it back.

    Set-based, per chunk of contacts in its own transaction: lock, two aggregates, one
    read of the current tiers, then one INSERT of new ContactTier rows, one UPDATE of
    changed ones and one INSERT of TierChange rows.

    Concurrency and idempotency: each chunk first takes `crm.db.lock_contacts` (pk
    order, as every writer of a contact does, so no deadlock) and reads the current
    tiers only after it holds the locks. A second run on the same contacts — nightly
    next to an order, or two orders at once — waits, then reads what the first one
    committed and finds nothing to change, so a change is never recorded twice. Rows
    are written only when the tier or the value changed: running twice at the same
    `now` writes nothing the second time. Nothing is published here."""
    now = now or clock.now()
    if allow_downgrade is None:
        allow_downgrade = review_day(now)
    counts = {"upgraded": 0, "downgraded": 0, "unchanged": 0}
    tiers = list(Tier.objects.order_by("rank"))
    if not tiers:  # nobody can hold one either: ContactTier PROTECTs its tier
        return counts
    ids = _candidates() if contact_ids is None else sorted(set(contact_ids))
    for i in range(0, len(ids), chunk):
        for key, value in _recompute_chunk(ids[i : i + chunk], tiers, now, allow_downgrade).items():
            counts[key] += value
    return counts


def _candidates() -> list[int]:
    """Every contact that has ever ordered, has points entries or holds a tier row."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT contact_id FROM {Order._meta.db_table} "
            f"UNION SELECT contact_id FROM {LedgerEntry._meta.db_table} WHERE unit = %s "
            f"UNION SELECT contact_id FROM {ContactTier._meta.db_table} "
            "ORDER BY 1",
            [POINTS],
        )
        return [row[0] for row in cursor.fetchall()]


@transaction.atomic
def _recompute_chunk(
    ids: list[int], tiers: list[Tier], now: dt.datetime, allow_downgrade: bool
) -> dict[str, int]:
    counts = {"upgraded": 0, "downgraded": 0, "unchanged": 0}
    locked = lock_contacts(Q(pk__in=ids))
    values = tier_values(locked, now)
    current = {row.contact_id: row for row in ContactTier.objects.filter(contact_id__in=locked)}
    by_pk = {t.pk: t for t in tiers}
    lowest = tiers[0]
    new_rows: list[ContactTier] = []
    changed_rows: list[ContactTier] = []
    changes: list[TierChange] = []
    for contact_id in locked:
        row = current.get(contact_id)
        held = by_pk.get(row.tier_id) if row is not None and row.tier_id else None
        target = qualified_tier(values[contact_id], tiers)
        held_rank = held.rank if held else -1
        target_rank = target.rank if target else -1
        if target_rank > held_rank:
            kind, reason = "upgraded", "upgrade"
        elif target_rank < held_rank and allow_downgrade:
            kind, reason = "downgraded", "yearly review"
        else:
            kind, reason, target = "unchanged", "", held
        # The value shown against the tier held (or, with none, the first to reach).
        qualified = _stored(values[contact_id][(target or held or lowest).basis])
        if kind == "unchanged":
            counts["unchanged"] += 1
            if row is not None and row.qualified_value != qualified:
                row.qualified_value, row.updated_at = qualified, now
                changed_rows.append(row)
            continue
        counts[kind] += 1
        explained = target or held
        changes.append(
            TierChange(
                contact_id=contact_id,
                from_tier=held,
                to_tier=target,
                reason=f"{reason}: {_describe(values[contact_id], explained.basis)}",
                at=now,
            )
        )
        if row is None:
            new_rows.append(
                ContactTier(
                    contact_id=contact_id,
                    tier=target,
                    qualified_value=qualified,
                    since=now,
                    updated_at=now,
                )
            )
        else:
            row.tier, row.qualified_value, row.since, row.updated_at = target, qualified, now, now
            changed_rows.append(row)
    # The contacts are locked and every writer of ContactTier goes through here, so no
    # other transaction can have created these rows since they were read.
    ContactTier.objects.bulk_create(new_rows)
    bulk_update_rows(changed_rows, ["tier", "qualified_value", "since", "updated_at"])
    TierChange.objects.bulk_create(changes)
    return counts


def _stored(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _describe(values: dict[str, Decimal], basis: str) -> str:
    if basis == Basis.POINTS:
        return f"{int(values[basis]):,} points earned in 12 months"
    return f"{values[basis]:,.2f} {base_currency()} spend in 12 months"


def _out(value: Decimal, basis: str) -> int | str:
    return int(value) if basis == Basis.POINTS else f"{value:.2f}"


def tier_progress(contact: Contact, now: dt.datetime | None = None) -> dict:
    """Where the contact stands, for the referral page and the API (JSON-ready: points
    as whole numbers, money as "0.00" strings in the base currency):

    tier / tier_since: the tier held (as recorded; None when none); next_tier: the next
    rank up (None at the top); basis, unit, value, threshold, missing and percent: the
    progress on the next tier's basis (on the held tier's at the top); keeps_tier: False
    when the value no longer reaches the held tier's threshold — it will be lost on
    review_on unless earned back; values: both bases."""
    now = now or clock.now()
    tiers = list(Tier.objects.order_by("rank"))
    row = ContactTier.objects.select_related("tier").filter(contact_id=contact.pk).first()
    held = row.tier if row is not None else None
    values = tier_values([contact.pk], now)[contact.pk]
    above = [t for t in tiers if held is None or t.rank > held.rank]
    next_tier = above[0] if above else None
    aim = next_tier or held
    progress: dict = {
        "tier": held.name if held else None,
        "tier_since": row.since if held else None,
        "next_tier": next_tier.name if next_tier else None,
        "basis": aim.basis if aim else None,
        "unit": None,
        "value": None,
        "threshold": None,
        "missing": None,
        "percent": None,
        "keeps_tier": held is None or values[held.basis] >= held.threshold,
        "review_on": next_review(now),
        "values": {
            Basis.POINTS: _out(values[Basis.POINTS], Basis.POINTS),
            Basis.SPEND: _out(values[Basis.SPEND], Basis.SPEND),
        },
    }
    if aim is None:
        return progress
    value = values[aim.basis]
    missing = max(aim.threshold - value, ZERO) if next_tier else ZERO
    if aim.basis == Basis.POINTS:
        missing = missing.to_integral_value(rounding=ROUND_CEILING)
    percent = 100 if aim.threshold <= 0 else min(int(value * 100 / aim.threshold), 100)
    progress.update(
        unit=POINTS if aim.basis == Basis.POINTS else base_currency(),
        value=_out(value, aim.basis),
        threshold=_out(aim.threshold, aim.basis),
        missing=_out(missing, aim.basis),
        percent=percent,
    )
    return progress
