"""Two-sided referrals: every contact has an unguessable code and a share link; a friend
who arrives with it (signup form, `referral_code` on an order or identify call, or the
landing page's cookie) is attached to the referrer; when the friend's first order meets
the minimum, both rewards are pending until the return window closes, then granted —
or cancelled when the order is refunded. Fraud rules refuse self-referral (same contact,
same email once normalised, same payment fingerprint or address when supplied), a second
referral of one friend, and more than the monthly cap per referrer; every refusal is
recorded with its reason."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction

from crm import clock
from crm.errors import KeepersError
from crm.models import Contact, Order, OrderStatus
from crm.services.contacts import Identity
from crm.services.events import EventIn, events_ingest
from loyalty.models import (
    POINTS,
    BonusRule,
    Coupon,
    Referral,
    ReferralCode,
    ReferralRefusal,
    ReferralVisit,
)
from loyalty.selectors import month_start
from loyalty.services.coupons import coupon_create
from loyalty.services.credit import credit_grant
from loyalty.services.ledger import ledger_grant
from loyalty.services.points import bonus_grant

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # no 0/O, 1/I/L, U: read aloud, typed by hand
CODE_LENGTH = 8
Status = Referral.Status


# ------------------------------------------------------------------------------------------
# Codes and visits
# ------------------------------------------------------------------------------------------
def referral_code_for(contact: Contact) -> ReferralCode:
    """The contact's code, made on first use (about 40 bits: not guessable in practice)."""
    existing = ReferralCode.objects.filter(contact=contact).first()
    if existing:
        return existing
    for _ in range(5):
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        try:
            with transaction.atomic():
                return ReferralCode.objects.create(
                    contact=contact, code=code, created_at=clock.now()
                )
        except IntegrityError:
            existing = ReferralCode.objects.filter(contact=contact).first()
            if existing:  # made concurrently for the same contact
                return existing
    raise KeepersError("Could not make a unique referral code; try again.")


def code_lookup(code: str) -> ReferralCode | None:
    cleaned = "".join(ch for ch in (code or "").upper() if ch.isalnum())
    return ReferralCode.objects.select_related("contact").filter(code=cleaned).first()


def share_url(code: ReferralCode) -> str:
    return f"{settings.KEEPERS_PUBLIC_URL.rstrip('/')}/r/{code.code}/"


def referral_visit_record(
    *, code: ReferralCode, visitor: str, ip: str = "", user_agent: str = ""
) -> None:
    ReferralVisit.objects.create(
        code=code,
        visitor=visitor[:64],
        ip_hash=hashlib.sha256(f"{settings.SECRET_KEY}:{ip}".encode()).hexdigest() if ip else "",
        user_agent=user_agent[:300],
        at=clock.now(),
    )


# ------------------------------------------------------------------------------------------
# Attaching a friend
# ------------------------------------------------------------------------------------------
def normalised_email(email: str) -> str:
    """alice.smith+promo@gmail.com and alicesmith@googlemail.com are one person."""
    local, _, domain = (email or "").strip().lower().partition("@")
    local = local.split("+", 1)[0]
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def _refuse(code: ReferralCode, friend: Contact | None, reason: str, email: str = "") -> None:
    ReferralRefusal.objects.create(
        code=code,
        friend=friend,
        email=(friend.email if friend else email) or "",
        reason=reason,
        at=clock.now(),
    )


def referral_attach(
    *,
    friend: Contact,
    code: str,
    channel: str,
    order: Order | None = None,
    now: dt.datetime | None = None,
) -> Referral | None:
    """Attach a friend to the code's owner, or record why not (returns None). A friend who
    is already referred keeps their first referrer. `order`: the first order carrying the
    code (only orders before it make the friend an existing customer)."""
    now = now or clock.now()
    owner = code_lookup(code)
    if owner is None:
        return None  # a mistyped code is not a fraud attempt: nothing to record
    existing = Referral.objects.filter(friend=friend).first()
    if existing is not None:
        if existing.code_id != owner.pk:
            _refuse(owner, friend, "already referred by someone else")
        return existing if existing.code_id == owner.pk else None
    reason = _self_referral(owner.contact, friend)
    if reason:
        _refuse(owner, friend, reason)
        return None
    earlier = Order.objects.filter(contact=friend)
    if order is not None:  # the order that carries the code is their first, not an earlier one
        earlier = earlier.exclude(pk=order.pk).filter(ordered_at__lt=order.ordered_at)
    if earlier.exists():
        _refuse(owner, friend, "already a customer before the referral")
        return None
    made = Referral.objects.filter(
        referrer=owner.contact, created_at__gte=month_start(now)
    ).count()  # this calendar month in shop time, as the admin's referral summary counts
    if made >= settings.KEEPERS_REFERRAL_MONTHLY_CAP:
        _refuse(owner, friend, f"the referrer's monthly cap ({made}) is reached")
        return None
    try:
        with transaction.atomic():
            return Referral.objects.create(
                referrer=owner.contact, friend=friend, code=owner, channel=channel, created_at=now
            )
    except IntegrityError:  # attached concurrently
        return Referral.objects.filter(friend=friend).first()


def _self_referral(referrer: Contact, friend: Contact) -> str:
    if referrer.pk == friend.pk:
        return "self-referral: the same contact"
    if (
        referrer.email
        and friend.email
        and normalised_email(referrer.email) == normalised_email(friend.email)
    ):
        return "self-referral: the same email address"
    return ""


_FINGERPRINTS = ("payment_fingerprint", "shipping_address")


def _shared_fingerprint(referrer: Contact, order: Order) -> str:
    """A payment fingerprint or shipping address on the friend's order that one of the
    referrer's own orders also carries."""
    for key in _FINGERPRINTS:
        value = str(order.attributes.get(key) or "").strip().lower()
        if not value:
            continue
        for theirs in Order.objects.filter(contact=referrer).values_list("attributes", flat=True):
            if str((theirs or {}).get(key) or "").strip().lower() == value:
                return f"self-referral: the same {key.replace('_', ' ')}"
    return ""


# ------------------------------------------------------------------------------------------
# The friend's first order, refunds, rewards
# ------------------------------------------------------------------------------------------
def referral_order_placed(*, order: Order, now: dt.datetime | None = None) -> Referral | None:
    """A friend's first order: attach by the code it carries (order attributes, then the
    contact's identify traits) if not attached yet; then qualify or refuse it."""
    now = now or clock.now()
    friend = order.contact
    referral = Referral.objects.filter(friend=friend).first()
    # A referral made before this order arrived is qualified only by an order placed after
    # it: a back-dated first order (history imported late) shows the friend was already a
    # customer. One attached by this order's own code was checked against earlier orders.
    made_before = referral is not None
    if referral is None:
        code = order.attributes.get("referral_code") or friend.attributes.get("referral_code")
        if not code:
            return None
        channel = "order" if order.attributes.get("referral_code") else "identify"
        referral = referral_attach(
            friend=friend, code=str(code), channel=channel, order=order, now=now
        )
        if referral is None:
            return None
    with transaction.atomic():
        referral = Referral.objects.select_for_update().get(pk=referral.pk)
        if referral.status != Status.SIGNED_UP:
            return referral
        first = Order.objects.filter(contact=friend).order_by("ordered_at", "pk").first()
        if first is None or first.pk != order.pk:
            return referral
        minimum = settings.KEEPERS_REFERRAL_MIN_ORDER
        fingerprint = _shared_fingerprint(referral.referrer, order)
        if made_before and order.ordered_at < referral.created_at:
            _close(referral, Status.REFUSED, "already a customer before the referral", order)
        elif fingerprint:
            _close(referral, Status.REFUSED, fingerprint, order)
        elif order.currency != settings.KEEPERS_BASE_CURRENCY:
            _close(
                referral,
                Status.REFUSED,
                f"first order in {order.currency}; the minimum is in "
                f"{settings.KEEPERS_BASE_CURRENCY}",
                order,
            )
        elif order.total < minimum:
            _close(
                referral,
                Status.REFUSED,
                f"first order below the minimum ({order.total} < {minimum})",
                order,
            )
        else:
            referral.status = Status.PENDING
            referral.order = order
            referral.reward_at = order.ordered_at + dt.timedelta(
                days=settings.KEEPERS_REFERRAL_RETURN_DAYS
            )
            referral.save(update_fields=["status", "order", "reward_at"])
    return referral


def _close(referral: Referral, status: str, reason: str, order: Order | None = None) -> None:
    referral.status = status
    referral.reason = reason[:300]
    referral.order = order or referral.order
    referral.save(update_fields=["status", "reason", "order"])
    if status == Status.REFUSED:
        _refuse(referral.code, referral.friend, reason)


def referral_order_refunded(*, order: Order) -> None:
    """A refund of the qualifying order before the rewards are granted cancels them."""
    with transaction.atomic():
        referral = (
            Referral.objects.select_for_update().filter(order=order, status=Status.PENDING).first()
        )
        if referral is not None:
            _close(referral, Status.CANCELLED, "the qualifying order was refunded")


def referrals_reward_due(*, now: dt.datetime | None = None) -> int:
    """Grant both sides' rewards for pending referrals whose return window has closed
    (each exactly once: keyed by referral and side), and record a "Referral Rewarded"
    event for each side, which campaigns can trigger on. Returns how many."""
    now = now or clock.now()
    done = 0
    for pk in Referral.objects.filter(status=Status.PENDING, reward_at__lte=now).values_list(
        "pk", flat=True
    )[:1000]:
        with transaction.atomic():
            referral = (
                Referral.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("referrer", "friend", "order")
                .filter(pk=pk, status=Status.PENDING)
                .first()
            )
            if referral is None:
                continue
            if referral.order is None or referral.order.status == OrderStatus.REFUNDED:
                _close(referral, Status.CANCELLED, "the qualifying order was refunded")
                continue
            for side, contact, spec in (
                ("referrer", referral.referrer, settings.KEEPERS_REFERRAL_REFERRER_REWARD),
                ("friend", referral.friend, settings.KEEPERS_REFERRAL_FRIEND_REWARD),
            ):
                given = reward_give(
                    contact=contact, spec=spec, key=f"referral:{referral.pk}:{side}", now=now
                )
                _rewarded_event(referral, side, contact, given, now)

            bonus_grant(
                contact=referral.referrer,
                kind=BonusRule.Kind.REFERRAL,
                key=f"referral:{referral.pk}",
                now=now,
            )
            referral.status = Status.REWARDED
            referral.rewarded_at = now
            referral.save(update_fields=["status", "rewarded_at"])
            done += 1
    return done


@dataclass
class Reward:
    kind: str  # points, credit, coupon
    amount: Decimal
    currency: str = ""
    days: int | None = None  # credit expiry / coupon validity

    def describe(self) -> str:
        if self.kind == "points":
            return f"{int(self.amount)} points"
        if self.kind == "credit":
            return f"{self.amount:.2f} {self.currency} store credit"
        return f"a {self.amount:g}% coupon"


def reward_parse(spec: str) -> Reward:
    """points:500 · credit:10:EUR:30 (amount, currency, expiry days) · coupon:15:60
    (percent off, valid days)."""
    parts = [p.strip() for p in spec.split(":")]
    try:
        if parts[0] == "points":
            return Reward("points", Decimal(parts[1]))
        if parts[0] == "credit":
            return Reward(
                "credit",
                Decimal(parts[1]),
                parts[2].upper(),
                int(parts[3]) if len(parts) > 3 else None,
            )
        if parts[0] == "coupon":
            return Reward(
                "coupon", Decimal(parts[1]), days=int(parts[2]) if len(parts) > 2 else None
            )
    except (IndexError, ValueError, ArithmeticError):
        pass
    raise KeepersError(
        f"Bad reward {spec!r}: points:N, credit:AMOUNT:CUR[:DAYS] or coupon:PERCENT[:DAYS]."
    )


def reward_give(*, contact: Contact, spec: str, key: str, now: dt.datetime) -> dict:
    """Grant one side's reward, once per key. Returns what was given (for the email)."""

    reward = reward_parse(spec)
    expires = now + dt.timedelta(days=reward.days) if reward.days else None
    if reward.kind == "points":
        ledger_grant(
            contact=contact,
            unit=POINTS,
            amount=reward.amount,
            reason="Referral reward",
            key=key,
            source_type="referral",
            now=now,
        )
        return {"reward": reward.describe()}
    if reward.kind == "credit":
        credit_grant(
            contact=contact,
            amount=reward.amount,
            currency=reward.currency,
            reason="Referral reward",
            key=key,
            expires_at=expires,
            source_type="referral",
            now=now,
        )
        return {"reward": reward.describe(), "expires_at": expires.isoformat() if expires else ""}

    coupon = Coupon.objects.filter(source_type="referral", source_id=key).first() or coupon_create(
        kind=Coupon.Kind.PERCENT,
        value=reward.amount,
        contact=contact,
        expires_at=expires,
        source_type="referral",
        source_id=key,
    )
    return {
        "reward": reward.describe(),
        "coupon": coupon.code,
        "expires_at": expires.isoformat() if expires else "",
    }


def _rewarded_event(
    referral: Referral, side: str, contact: Contact, given: dict, now: dt.datetime
) -> None:

    if not contact.email and not contact.external_id:
        return
    events_ingest(
        [
            EventIn(
                name="Referral Rewarded",
                identity=Identity(
                    email=contact.email or None, external_id=contact.external_id or None
                ),
                properties={
                    "referral_id": referral.pk,
                    "side": side,
                    "friend_name": referral.friend.first_name,
                    "referrer_name": referral.referrer.first_name,
                    **given,
                },
                occurred_at=now,
                message_id=f"referral-rewarded:{referral.pk}:{side}",
                source="loyalty",
            )
        ],
        source="loyalty",
    )
