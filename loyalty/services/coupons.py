"""Coupons: readable generated codes, percent / fixed / free-shipping discounts with a
minimum order, a validity window, usage limits (overall and per contact) and an optional
binding to one contact; validated, redeemed against an order, released on a refund.

Codes. A generated code is two groups of four characters from an alphabet without the
look-alikes 0/O, 1/I/L and U (`7HQK-9X2M`, or `WELCOME-7HQK-9X2M` with a prefix), drawn
with `secrets`: about 39 bits, so codes cannot be guessed. Customers type codes in any
case, with or without the dashes or with spaces: a lookup compares the code's letters and
digits only. Generated codes are stored grouped, codes chosen by staff as letters and
digits only, so the code's own unique index finds both (see `_candidates`).

Redemption. Every redemption of a coupon locks the coupon's row, re-checks the rules,
records the CouponRedemption and adds the use with F(), in one transaction: twenty
simultaneous redemptions of a single-use coupon serialise on that lock and exactly one
succeeds (the database's check `uses <= max_uses` is the last line of defence). The same
(coupon, order) again returns the first redemption and moves nothing."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Q

from crm import clock
from crm.currencies import minor_digits
from crm.errors import KeepersError
from crm.models import Contact, Order, OrderStatus
from crm.services.parsing import parse_currency, parse_int, parse_money, parse_str
from loyalty.models import Coupon, CouponRedemption

Kind = Coupon.Kind
ZERO = Decimal("0")

# No 0/O, 1/I/L (they look alike) and no U (it reads as V; it also keeps words out).
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUPS, GROUP_LENGTH = 2, 4
RANDOM_LENGTH = GROUPS * GROUP_LENGTH
MAX_CODE_LENGTH = Coupon._meta.get_field("code").max_length or 40
MAX_PREFIX_LENGTH = MAX_CODE_LENGTH - RANDOM_LENGTH - GROUPS  # the dashes
_SEPARATORS = re.compile(r"[\s\-_]+")
_CODE_CHARS = re.compile(r"^[A-Z0-9]+$")


# What each refusal is called in the API, and who it is the fault of: the coupon's
# state (409) or the request (400).
REASONS: dict[str, int] = {
    "coupon_unknown": 404,
    "coupon_inactive": 409,
    "coupon_not_started": 409,
    "coupon_expired": 409,
    "coupon_used_up": 409,
    "coupon_other_contact": 409,
    "coupon_contact_limit": 409,
    "coupon_contact_required": 400,
    "coupon_below_minimum": 400,
    "coupon_order_total_required": 400,
    "coupon_currency_mismatch": 400,
}


def _refusal(code: str, message: str, field: str = "code", **details: object) -> KeepersError:
    return KeepersError(
        message,
        code=code,
        field=field,
        status_code=REASONS[code],
        details={"field": field, **{k: str(v) for k, v in details.items()}},
    )


# ---------------------------------------------------------------------------- codes


def code_normalize(code: object) -> str:
    """What a customer typed, as letters and digits only: `7hqk 9x2m` → `7HQK9X2M`."""
    if not isinstance(code, str):
        return ""
    return _SEPARATORS.sub("", code).upper()


def _grouped(normalized: str) -> str:
    """The generated form: the last eight characters in two groups, the prefix before."""
    if len(normalized) < RANDOM_LENGTH:
        return normalized
    head, tail = normalized[:-RANDOM_LENGTH], normalized[-RANDOM_LENGTH:]
    groups = [tail[i : i + GROUP_LENGTH] for i in range(0, RANDOM_LENGTH, GROUP_LENGTH)]
    return "-".join([head, *groups] if head else groups)


def _candidates(code: object) -> list[str]:
    """The stored forms a typed code can have: as chosen (letters and digits only) or as
    generated (grouped with dashes). Both are equality lookups on the unique index."""
    normalized = code_normalize(code)
    if not normalized:
        return []
    return list(dict.fromkeys([normalized, _grouped(normalized)]))


def _prefix_clean(prefix: str) -> str:
    cleaned = code_normalize(prefix)
    if cleaned and not _CODE_CHARS.match(cleaned):
        raise KeepersError("A prefix is letters and digits only.", field="prefix")
    if len(cleaned) > MAX_PREFIX_LENGTH:
        raise KeepersError(f"A prefix is at most {MAX_PREFIX_LENGTH} characters.", field="prefix")
    return cleaned


def coupon_code(prefix: str = "") -> str:
    """A new random code, `7HQK-9X2M` (or `PREFIX-7HQK-9X2M`): unambiguous to read aloud
    or type, and unguessable (`secrets`)."""
    cleaned = _prefix_clean(prefix)
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return _grouped(cleaned + random_part)


def coupon_get(code: object) -> Coupon:
    """The coupon with this code, however it was typed; 404 when there is none."""
    candidates = _candidates(code)
    coupon = (
        Coupon.objects.filter(code__in=candidates).order_by("pk").first() if candidates else None
    )
    if coupon is None:
        raise _refusal("coupon_unknown", "There is no coupon with this code.")
    return coupon


# --------------------------------------------------------------------------- create


def _taken(code: str) -> bool:
    return Coupon.objects.filter(code__in=_candidates(code)).exists()


def coupon_create(
    *,
    kind: str,
    value: Decimal | int | str | None = 0,
    currency: str = "",
    min_order: Decimal | int | str | None = 0,
    contact: Contact | None = None,
    max_uses: int = 1,
    max_uses_per_contact: int | None = None,
    starts_at: dt.datetime | None = None,
    expires_at: dt.datetime | None = None,
    release_on_refund: bool = True,
    code: str | None = None,
    prefix: str = "",
    source_type: str = "",
    source_id: str = "",
    now: dt.datetime | None = None,
) -> Coupon:
    """A new coupon. `code` chooses the code (letters and digits; spaces and dashes are
    dropped); otherwise one is generated, retried on the rare collision. Every refusal
    names its field."""
    now = now or clock.now()
    amount, currency, minimum = _discount_clean(kind, value, currency, min_order)
    max_uses = parse_int(max_uses, "max_uses", minimum=1)
    if max_uses_per_contact is not None:
        max_uses_per_contact = parse_int(max_uses_per_contact, "max_uses_per_contact", minimum=1)
    _dates_check(starts_at, expires_at, now)
    fields = {
        "kind": kind,
        "value": amount,
        "currency": currency,
        "min_order": minimum,
        "contact": contact,
        "max_uses": max_uses,
        "max_uses_per_contact": max_uses_per_contact,
        "starts_at": starts_at,
        "expires_at": expires_at,
        "release_on_refund": bool(release_on_refund),
        "source_type": parse_str(source_type, "source_type", max_length=20),
        "source_id": parse_str(str(source_id), "source_id", max_length=100),
        "created_at": now,
    }
    if code is not None:
        return _create_chosen(code, fields)
    return _create_generated(_prefix_clean(prefix), fields)


def _discount_clean(
    kind: str, value: object, currency: str, min_order: object
) -> tuple[Decimal, str, Decimal]:
    """(value, currency, minimum order) of a coupon of this kind, or the refusal naming
    its field: a percent in (0, 100], a fixed amount above zero in its currency's minor
    units, free shipping without a value, a minimum only with a currency."""
    if kind not in Kind.values:
        raise KeepersError(f"The kind is one of: {', '.join(Kind.values)}.", field="kind")
    amount = parse_money(value if value not in (None, "") else 0, "value")
    currency = parse_currency(currency, "currency") if currency else ""
    minimum = parse_money(min_order if min_order not in (None, "") else 0, "min_order")
    if kind == Kind.PERCENT and not ZERO < amount <= 100:
        raise KeepersError("A percent discount is more than 0 and at most 100.", field="value")
    if kind == Kind.FIXED:
        if amount <= 0:
            raise KeepersError("A fixed discount is more than zero.", field="value")
        if not currency:
            raise KeepersError("A fixed discount needs its currency.", field="currency")
        if amount != amount.quantize(Decimal(1).scaleb(-minor_digits(currency))):
            raise KeepersError(
                f"{currency} amounts have {minor_digits(currency)} decimal places.", field="value"
            )
    if kind == Kind.FREE_SHIPPING and amount != 0:
        raise KeepersError("Free shipping has no value: leave it at 0.", field="value")
    if minimum > 0 and not currency:
        raise KeepersError("A minimum order needs its currency.", field="currency")
    return amount, currency, minimum


def _dates_check(
    starts_at: dt.datetime | None, expires_at: dt.datetime | None, now: dt.datetime
) -> None:
    if starts_at and expires_at and expires_at <= starts_at:
        raise KeepersError("It must expire after it starts.", field="expires_at")
    if expires_at and expires_at <= now:
        raise KeepersError("This expiry is already past.", field="expires_at")


def _create_generated(prefix: str, fields: dict) -> Coupon:
    """A coupon with a generated code, drawn again on the rare collision."""
    for _ in range(5):
        candidate = coupon_code(prefix)
        if _taken(candidate):
            continue
        try:
            with transaction.atomic():
                return Coupon.objects.create(code=candidate, **fields)
        except IntegrityError:  # generated concurrently by someone else: draw again
            continue
    raise KeepersError(  # 30^8 codes: five collisions in a row means something is wrong
        "Could not find a free code; try again.", field="prefix", status_code=409
    )


def _create_chosen(code: str, fields: dict) -> Coupon:
    normalized = code_normalize(code)
    if not normalized or not _CODE_CHARS.match(normalized):
        raise KeepersError(
            "A code is letters and digits (spaces and dashes are dropped).", field="code"
        )
    if not 4 <= len(normalized) <= MAX_CODE_LENGTH:
        raise KeepersError(f"A code is 4 to {MAX_CODE_LENGTH} characters.", field="code")
    conflict = KeepersError(
        f"The code {normalized} is already taken.", field="code", code="conflict", status_code=409
    )
    # The unique index sees the stored form; a generated code of the same letters is
    # stored grouped, so look for that form too.
    if _taken(normalized):
        raise conflict
    try:
        with transaction.atomic():
            return Coupon.objects.create(code=normalized, **fields)
    except IntegrityError:
        raise conflict from None


def _lock_coupons(ids: list[int]) -> list[Coupon]:
    """The one way coupon rows are locked: FOR UPDATE in primary-key order, so two
    transactions that lock more than one coupon cannot deadlock."""
    return list(Coupon.objects.select_for_update().filter(pk__in=ids).order_by("pk"))


# ------------------------------------------------------------------------- validate


def _discount(coupon: Coupon, order_total: Decimal | None, currency: str) -> Decimal | None:
    """What the coupon takes off an order of `order_total` (None when that is unknown)."""
    if coupon.kind == Kind.FREE_SHIPPING:
        return ZERO
    if coupon.kind == Kind.FIXED:
        return coupon.value if order_total is None else min(coupon.value, order_total)
    if order_total is None:
        return None
    digits = minor_digits(currency or coupon.currency) if (currency or coupon.currency) else 2
    raw = order_total * coupon.value / 100
    return min(raw.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP), order_total)


def _check(
    coupon: Coupon,
    *,
    contact: Contact | None,
    order_total: Decimal | None,
    currency: str,
    now: dt.datetime,
    for_redemption: bool,
) -> KeepersError | None:
    """Why this coupon cannot be used now, or None. Reads `coupon.uses` as given: under
    redemption the caller holds the row lock, so the count is current."""
    return (
        _state_refusal(coupon, now)
        or _customer_refusal(coupon, contact)
        or _order_refusal(
            coupon, order_total=order_total, currency=currency, for_redemption=for_redemption
        )
    )


def _state_refusal(coupon: Coupon, now: dt.datetime) -> KeepersError | None:
    """Switched off, not started, expired or used up."""
    if not coupon.active:
        return _refusal("coupon_inactive", "This coupon has been switched off.")
    if coupon.starts_at and now < coupon.starts_at:
        return _refusal(
            "coupon_not_started",
            f"This coupon can be used from {coupon.starts_at:%Y-%m-%d %H:%M} UTC.",
            starts_at=coupon.starts_at.isoformat(),
        )
    if coupon.expires_at and now >= coupon.expires_at:
        return _refusal(
            "coupon_expired",
            f"This coupon expired on {coupon.expires_at:%Y-%m-%d %H:%M} UTC.",
            expires_at=coupon.expires_at.isoformat(),
        )
    if coupon.uses >= coupon.max_uses:
        return _refusal(
            "coupon_used_up",
            "This coupon has already been used."
            if coupon.max_uses == 1
            else f"This coupon has been used the most times it may be ({coupon.max_uses}).",
        )
    return None


def _customer_refusal(coupon: Coupon, contact: Contact | None) -> KeepersError | None:
    """Bound to another customer, or this customer's uses are spent."""
    if coupon.contact_id is not None:
        if contact is None:
            return _refusal(
                "coupon_contact_required",
                "This coupon belongs to one customer: say who is using it "
                "(contact_id, email or external_id).",
                field="contact_id",
            )
        if contact.pk != coupon.contact_id:
            return _refusal(
                "coupon_other_contact",
                "This coupon belongs to another customer.",
                field="contact_id",
            )
    if coupon.max_uses_per_contact is not None:
        if contact is None:
            return _refusal(
                "coupon_contact_required",
                "This coupon is limited per customer: say who is using it "
                "(contact_id, email or external_id).",
                field="contact_id",
            )
        used = CouponRedemption.objects.filter(
            coupon=coupon, contact=contact, released_at__isnull=True
        ).count()
        if used >= coupon.max_uses_per_contact:
            return _refusal(
                "coupon_contact_limit",
                f"This customer has already used this coupon {used} time(s), the most allowed.",
                field="contact_id",
            )
    return None


def _order_refusal(
    coupon: Coupon, *, order_total: Decimal | None, currency: str, for_redemption: bool
) -> KeepersError | None:
    """The order's currency or total does not fit (a check without a total passes)."""
    if coupon.currency and currency and currency != coupon.currency:
        return _refusal(
            "coupon_currency_mismatch",
            f"This coupon is for orders in {coupon.currency}, not {currency}.",
            field="currency",
        )
    if order_total is None:
        if for_redemption and (coupon.min_order > 0 or coupon.kind != Kind.FREE_SHIPPING):
            return _refusal(
                "coupon_order_total_required",
                "Give the order total (order_total) to redeem this coupon.",
                field="order_total",
            )
        return None
    if coupon.currency and not currency:
        return _refusal(
            "coupon_currency_mismatch",
            f"This coupon is for orders in {coupon.currency}: give the order's currency.",
            field="currency",
        )
    if order_total < coupon.min_order:
        return _refusal(
            "coupon_below_minimum",
            f"This coupon needs an order of at least "
            f"{amount_text(coupon.min_order, coupon.currency)} {coupon.currency}.",
            field="order_total",
            min_order=amount_text(coupon.min_order, coupon.currency),
        )
    return None


def _inputs(order_total: object, currency: str) -> tuple[Decimal | None, str]:
    total = None if order_total in (None, "") else parse_money(order_total, "order_total")
    return total, parse_currency(currency, "currency") if currency else ""


def amount_text(value: Decimal | None, currency: str = "") -> str | None:
    """An amount as a string with the currency's decimals (more only if it has them)."""
    if value is None:
        return None
    digits = minor_digits(currency) if currency else 2
    if value == value.quantize(Decimal(1).scaleb(-digits)):
        return f"{value:.{digits}f}"
    return f"{value.normalize():f}"


def coupon_validate(
    *,
    code: str,
    contact: Contact | None = None,
    order_total: Decimal | int | str | None = None,
    currency: str = "",
    now: dt.datetime | None = None,
) -> dict:
    """Would this code work on this order? Answers with the reason when not (unknown,
    inactive, not started, expired, used up, another customer's, the per-customer limit,
    below the minimum, another currency) and the discount it gives when it would: a
    percent of the total, a fixed amount capped at the total, or free shipping. Without
    an order total the minimum is not checked and a percent discount is unknown."""
    total, currency = _inputs(order_total, currency)
    now = now or clock.now()
    coupon: Coupon | None = None
    try:
        coupon = coupon_get(code)
        refusal = _check(
            coupon,
            contact=contact,
            order_total=total,
            currency=currency,
            now=now,
            for_redemption=False,
        )
    except KeepersError as error:  # the unknown code; _check answers, never raises
        refusal = error
    result: dict = {
        "valid": refusal is None,
        "code": coupon.code if coupon else code_normalize(code),
        "reason": refusal.message if refusal else None,
        "reason_code": refusal.code if refusal else None,
        "discount": None,
        "free_shipping": False,
        "kind": coupon.kind if coupon else None,
        "currency": (currency or coupon.currency) if coupon else currency,
        "min_order": amount_text(coupon.min_order, coupon.currency) if coupon else None,
        "expires_at": coupon.expires_at if coupon else None,
    }
    if coupon is not None and refusal is None:
        result["discount"] = amount_text(
            _discount(coupon, total, currency), currency or coupon.currency
        )
        result["free_shipping"] = coupon.kind == Kind.FREE_SHIPPING
    return result


# --------------------------------------------------------------------------- redeem


def coupon_redeem(
    *,
    code: str,
    order_ref: str,
    contact: Contact | None = None,
    order_total: Decimal | int | str | None = None,
    currency: str = "",
    now: dt.datetime | None = None,
) -> tuple[CouponRedemption, bool]:
    """Use the coupon on the shop's order `order_ref`. Returns (redemption, created).

    Safe under concurrency: the coupon's row is locked (FOR UPDATE) before the rules are
    checked again, so of many simultaneous redemptions of a single-use coupon exactly one
    succeeds and the rest are refused with 409 `coupon_used_up`. The same coupon on the
    same order again returns the first redemption and moves nothing (idempotent by
    order). When Keepers knows the order, the redemption is linked to it, and its contact
    stands in when none is given."""
    order_ref = parse_str(order_ref, "order_id", required=True)
    total, currency = _inputs(order_total, currency)
    now = now or clock.now()
    coupon_id = coupon_get(code).pk
    previous = CouponRedemption.objects.filter(coupon_id=coupon_id, order_ref=order_ref).first()
    if previous is not None:
        return previous, False
    order = Order.objects.filter(external_id=order_ref).only("pk", "contact_id").first()
    if contact is None and order is not None:
        contact = Contact.objects.get(pk=order.contact_id)
    try:
        with transaction.atomic():
            locked = _lock_coupons([coupon_id])
            if not locked:  # deleted since we looked it up
                raise _refusal("coupon_unknown", "There is no coupon with this code.")
            coupon = locked[0]
            # A redemption of this order that committed while we waited for the lock.
            previous = CouponRedemption.objects.filter(coupon=coupon, order_ref=order_ref).first()
            if previous is not None:
                return previous, False
            refusal = _check(
                coupon,
                contact=contact,
                order_total=total,
                currency=currency,
                now=now,
                for_redemption=True,
            )
            if refusal is not None:
                raise refusal
            redemption = CouponRedemption.objects.create(
                coupon=coupon,
                contact=contact,
                order_ref=order_ref,
                order=order,
                discount=_discount(coupon, total, currency) or ZERO,
                currency=currency or coupon.currency,
                redeemed_at=now,
            )
            Coupon.objects.filter(pk=coupon.pk).update(uses=F("uses") + 1)
    except IntegrityError:
        # Only reachable if a writer bypassed the lock: the constraints decide.
        previous = CouponRedemption.objects.filter(coupon_id=coupon_id, order_ref=order_ref).first()
        if previous is not None:
            return previous, False
        raise _refusal("coupon_used_up", "This coupon has already been used.") from None
    return redemption, True


# -------------------------------------------------------------------------- release


def coupon_release(*, order: Order, now: dt.datetime | None = None) -> int:
    """A fully refunded order gives back the single-use coupons it used (those with
    `release_on_refund`), exactly once. A partial refund keeps them used: the customer
    kept part of what the coupon paid for. Returns how many coupons were released."""
    order = Order.objects.only("pk", "status", "external_id").get(pk=order.pk)
    if order.status != OrderStatus.REFUNDED:
        return 0
    return _release(Q(order=order) | Q(order_ref=order.external_id), now=now)


def coupon_release_for_order_ref(order_ref: str, *, now: dt.datetime | None = None) -> int:
    """As coupon_release, for a shop order Keepers may not know: the caller says it was
    refunded."""
    order_ref = parse_str(order_ref, "order_id", required=True)
    return _release(Q(order_ref=order_ref), now=now)


@transaction.atomic
def _release(where: Q, *, now: dt.datetime | None) -> int:
    """Mark the redemptions released and give their coupons a use back. The coupons are
    locked first, in primary-key order (as redemption locks them), and the redemptions
    re-read under those locks, so two refunds arriving together release once."""
    now = now or clock.now()
    releasable = CouponRedemption.objects.filter(
        where,
        released_at__isnull=True,
        coupon__max_uses=1,
        coupon__release_on_refund=True,
    )
    coupon_ids = sorted(set(releasable.values_list("coupon_id", flat=True)))
    if not coupon_ids:
        return 0
    _lock_coupons(coupon_ids)
    rows = list(releasable.filter(coupon_id__in=coupon_ids).values_list("pk", "coupon_id"))
    if not rows:
        return 0
    CouponRedemption.objects.filter(pk__in=[pk for pk, _ in rows]).update(released_at=now)
    for coupon_id, count in sorted(Counter(c for _, c in rows).items()):
        Coupon.objects.filter(pk=coupon_id, uses__gte=count).update(uses=F("uses") - count)
    return len(rows)
