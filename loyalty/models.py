"""Loyalty: one append-only ledger for points and store credit, tiers, referrals and
coupons.

The ledger: every movement of value is a LedgerEntry (earn, redeem, expire, adjust,
clawback) in one unit — "points" (whole numbers) or a currency code (Decimal). Grants
(positive entries) carry `remaining`, `expires_at` and `redeemable_from`; a debit
consumes grants oldest-expiry-first and records each part as an Allocation. Balances are
sums; `remaining` is the per-grant running sum, changed only under the grant's row lock,
so two redemptions can never spend the same value."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.models import Contact, Order

POINTS = "points"


class LedgerEntryQuerySet(models.QuerySet):
    """The one wording of "what is still owed" for every reader of the ledger."""

    def open(self, now: dt.datetime) -> LedgerEntryQuerySet:
        """Grants with value left that have not expired at `now` (pending ones, redeemable
        only later, included)."""
        return self.filter(remaining__gt=0).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )

    def spendable(self, now: dt.datetime) -> LedgerEntryQuerySet:
        """Open grants that may be spent at `now`: their redeem window has opened."""
        return self.open(now).filter(Q(redeemable_from__isnull=True) | Q(redeemable_from__lte=now))

    def expiring(self, now: dt.datetime, within: dt.timedelta) -> LedgerEntryQuerySet:
        """Open grants that expire within `within` of `now`."""
        return self.open(now).filter(expires_at__lte=now + within)

    def due_to_expire(self, now: dt.datetime) -> LedgerEntryQuerySet:
        """Grants with value left whose expiry has come: the expiry run writes them off."""
        return self.filter(remaining__gt=0, expires_at__lte=now)


class LedgerEntry(models.Model):
    class Type(models.TextChoices):
        EARN = "earn", "Earned / granted"
        REDEEM = "redeem", "Redeemed"
        EXPIRE = "expire", "Expired"
        ADJUST = "adjust", "Adjusted by staff"
        CLAWBACK = "clawback", "Clawed back (refund)"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="ledger")
    unit = models.CharField(
        max_length=6, help_text='"points", or the currency code of store credit'
    )
    type = models.CharField(max_length=8, choices=Type.choices)
    amount = models.DecimalField(
        max_digits=16, decimal_places=4, help_text="Positive: value in; negative: value out"
    )
    remaining = models.DecimalField(
        max_digits=16,
        decimal_places=4,
        default=Decimal("0"),
        help_text="For a grant: what is left of it to spend",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    redeemable_from = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=300)
    source_type = models.CharField(
        max_length=20, blank=True, help_text="order, refund, campaign, referral, staff, coupon…"
    )
    source_id = models.CharField(max_length=100, blank=True)
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    staff_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    idempotency_key = models.CharField(max_length=200)
    shortfall = models.DecimalField(
        max_digits=16,
        decimal_places=4,
        default=Decimal("0"),
        help_text="A clawback that could not take all it should (already spent)",
    )
    created_at = models.DateTimeField()

    objects = LedgerEntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "unit", "idempotency_key"], name="loyalty_entry_once"
            ),
            models.CheckConstraint(
                condition=Q(remaining__gte=0)
                & (Q(amount__gt=0, remaining__lte=models.F("amount")) | Q(remaining=0)),
                name="loyalty_remaining_within_grant",
            ),
        ]
        indexes = [
            models.Index(
                fields=["contact", "unit", "expires_at"],
                name="loyalty_open_grants",
                condition=Q(remaining__gt=0),
            ),
            models.Index(
                fields=["expires_at"], name="loyalty_expiring", condition=Q(remaining__gt=0)
            ),
            models.Index(fields=["contact", "unit", "created_at"], name="loyalty_history"),
            models.Index(fields=["order", "type"], name="loyalty_by_order"),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} {self.amount} {self.unit}"


class Allocation(models.Model):
    """Which grant a debit (redeem, expire, clawback) took how much from."""

    debit = models.ForeignKey(LedgerEntry, on_delete=models.CASCADE, related_name="allocations")
    grant = models.ForeignKey(LedgerEntry, on_delete=models.CASCADE, related_name="consumed_by")
    amount = models.DecimalField(max_digits=16, decimal_places=4)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="loyalty_allocation_positive")
        ]

    def __str__(self) -> str:
        return f"{self.amount} from #{self.grant_id}"


class EarnRule(models.Model):
    """Points per unit of money spent, per currency."""

    class Rounding(models.TextChoices):
        DOWN = "down", "Round down"
        NEAREST = "nearest", "Round to nearest"
        UP = "up", "Round up"

    currency = models.CharField(
        max_length=3, unique=True, help_text="Orders in this currency earn by this rule (EUR, USD…)"
    )
    points_per_unit = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal("1"),
        verbose_name="points per unit of money",
        help_text="Points for each 1.00 spent (1 = a point per euro)",
    )
    rounding = models.CharField(
        max_length=7,
        choices=Rounding.choices,
        default=Rounding.DOWN,
        help_text="What happens to a fraction of a point on an order",
    )
    expiry_months = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Points expire this many months after they are earned"
    )
    credit_per_point = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal("0.01"),
        help_text="Redemption rate: store credit (in this currency) per point",
    )

    def __str__(self) -> str:
        return f"{self.points_per_unit} points per {self.currency}"


class BonusRule(models.Model):
    class Kind(models.TextChoices):
        FIRST_ORDER = "first_order", "First order"
        BIRTHDAY = "birthday", "Birthday"
        EVENT = "event", "An event (e.g. Review Submitted)"
        REFERRAL = "referral", "A referral rewarded"

    kind = models.CharField(max_length=12, choices=Kind.choices, help_text="What earns the bonus")
    event = models.CharField(max_length=200, blank=True, help_text="For kind event")
    points = models.PositiveIntegerField(help_text="Points given each time")
    active = models.BooleanField(default=True, help_text="Untick to stop giving this bonus")

    def __str__(self) -> str:
        return f"{self.points} points: {self.event or self.get_kind_display()}"


class Tier(models.Model):
    class Basis(models.TextChoices):
        POINTS = "points", "Points earned in 12 months"
        SPEND = "spend", "Net spend in 12 months"

    name = models.CharField(max_length=100, unique=True)
    rank = models.PositiveSmallIntegerField(unique=True, help_text="Higher is better")
    basis = models.CharField(
        max_length=6,
        choices=Basis.choices,
        default=Basis.SPEND,
        help_text="What a customer's tier is measured on, over the last 12 months",
    )
    threshold = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        help_text="The points or the spend (in the base currency) that reach this tier",
    )
    multiplier = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("1"), help_text="On points earned"
    )

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return self.name


class ContactTier(models.Model):
    contact = models.OneToOneField(
        Contact, on_delete=models.CASCADE, primary_key=True, related_name="tier_status"
    )
    tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT)
    qualified_value = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    since = models.DateTimeField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.tier or '—'}"


class TierChange(models.Model):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="tier_changes")
    from_tier = models.ForeignKey(
        Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_tier = models.ForeignKey(
        Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=200)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["at"])]

    def __str__(self) -> str:
        return f"{self.from_tier or '—'} → {self.to_tier or '—'}"


class Coupon(models.Model):
    class Kind(models.TextChoices):
        PERCENT = "percent", "Percent off"
        FIXED = "fixed", "Fixed amount off"
        FREE_SHIPPING = "free_shipping", "Free shipping"

    code = models.CharField(max_length=40, unique=True)
    kind = models.CharField(max_length=13, choices=Kind.choices)
    value = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("0"))
    currency = models.CharField(max_length=3, blank=True, help_text="For fixed and minimum")
    min_order = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("0"))
    contact = models.ForeignKey(
        Contact,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="coupons",
        help_text="Bound to this contact only",
    )
    max_uses = models.PositiveIntegerField(default=1, help_text="1 for single use")
    max_uses_per_contact = models.PositiveIntegerField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0)
    starts_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    release_on_refund = models.BooleanField(
        default=True, help_text="A refunded order gives a single-use coupon back"
    )
    active = models.BooleanField(default=True)
    source_type = models.CharField(max_length=20, blank=True)
    source_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(uses__lte=models.F("max_uses")), name="loyalty_coupon_uses"
            )
        ]

    def __str__(self) -> str:
        return self.code


class CouponRedemption(models.Model):
    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="redemptions")
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    order_ref = models.CharField(max_length=255, help_text="The shop's order id")
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    discount = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("0"))
    currency = models.CharField(max_length=3, blank=True)
    redeemed_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["coupon", "order_ref"], name="loyalty_coupon_once_per_order"
            )
        ]

    def __str__(self) -> str:
        return f"{self.coupon} on {self.order_ref}"


class ReferralCode(models.Model):
    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, related_name="referral_code")
    code = models.CharField(max_length=20, unique=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.code


class ReferralVisit(models.Model):
    code = models.ForeignKey(ReferralCode, on_delete=models.CASCADE, related_name="visits")
    visitor = models.CharField(max_length=64, help_text="The first-party cookie's id")
    ip_hash = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["code", "at"])]

    def __str__(self) -> str:
        return f"{self.code} {self.at:%Y-%m-%d}"


class Referral(models.Model):
    """A friend who came with a code. Pending until their first order meets the minimum
    and the return window has closed; then both sides are rewarded — or it is refused
    (with the reason) or cancelled (the order was refunded)."""

    class Status(models.TextChoices):
        SIGNED_UP = "signed_up", _("Signed up, no qualifying order yet")
        PENDING = "pending", _("Qualifying order; reward pending until the return window closes")
        REWARDED = "rewarded", _("Rewarded")
        REFUSED = "refused", _("Refused")
        CANCELLED = "cancelled", _("Cancelled (order refunded)")

    referrer = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="referrals_made")
    friend = models.OneToOneField(
        Contact, on_delete=models.CASCADE, related_name="referred_by", help_text="One per friend"
    )
    code = models.ForeignKey(ReferralCode, on_delete=models.PROTECT, related_name="referrals")
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.SIGNED_UP)
    reason = models.CharField(max_length=300, blank=True)
    channel = models.CharField(max_length=20, blank=True, help_text="form, api, cookie")
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reward_at = models.DateTimeField(null=True, blank=True)
    rewarded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["referrer", "created_at"]),
            models.Index(
                fields=["reward_at"], name="loyalty_referral_due", condition=Q(status="pending")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.referrer_id} → {self.friend_id} ({self.status})"


class ReferralRefusal(models.Model):
    """Every refused attempt, with its reason (self-referral, cap, already referred…)."""

    code = models.ForeignKey(ReferralCode, on_delete=models.CASCADE, related_name="refusals")
    friend = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    email = models.CharField(max_length=254, blank=True)
    reason = models.CharField(max_length=300)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return self.reason
