"""loyalty's part of a contact's export and erasure, registered with crm's
`privacy_register` (crm/extend.py) in LoyaltyConfig.ready: the ledger, the tier and its
history, coupons and redemptions, referrals on both sides (made and referred by), the
referral code and its refusals. Erasure keeps every amount and row (balances, liability
and the referral figures do not move); it scrubs the person from free text, here and in
the other side's mail and ledger reasons."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from crm.extend import Erasure, privacy_rows
from crm.models import Contact
from loyalty.models import (
    ContactTier,
    Coupon,
    CouponRedemption,
    LedgerEntry,
    Referral,
    ReferralCode,
    ReferralRefusal,
    TierChange,
)


def loyalty_export(contact: Contact) -> dict[str, Any]:
    tier = ContactTier.objects.filter(contact=contact).select_related("tier").first()
    return {
        "ledger": privacy_rows(
            LedgerEntry.objects.filter(contact=contact).order_by("created_at", "pk"),
            "unit",
            "type",
            "amount",
            "remaining",
            "expires_at",
            "reason",
            "source_type",
            "source_id",
            "order__external_id",
            "created_at",
        ),
        "tier": None
        if tier is None
        else {
            "tier": tier.tier.name if tier.tier else None,
            "qualified_value": tier.qualified_value,
            "since": tier.since,
        },
        "tier_history": privacy_rows(
            TierChange.objects.filter(contact=contact).order_by("at", "pk"),
            "from_tier__name",
            "to_tier__name",
            "reason",
            "at",
        ),
        "coupons": privacy_rows(
            Coupon.objects.filter(contact=contact).order_by("created_at"),
            "code",
            "kind",
            "value",
            "currency",
            "uses",
            "max_uses",
            "expires_at",
            "active",
            "created_at",
        ),
        "coupon_redemptions": privacy_rows(
            CouponRedemption.objects.filter(contact=contact).order_by("redeemed_at"),
            "coupon__code",
            "order_ref",
            "discount",
            "currency",
            "redeemed_at",
            "released_at",
        ),
        "referral_code": ReferralCode.objects.filter(contact=contact)
        .values_list("code", flat=True)
        .first(),
        "referrals_made": privacy_rows(
            Referral.objects.filter(referrer=contact).order_by("created_at"),
            "friend_id",
            "status",
            "reason",
            "channel",
            "reward_at",
            "rewarded_at",
            "created_at",
        ),
        "referred_by": privacy_rows(
            Referral.objects.filter(friend=contact),
            "referrer_id",
            "status",
            "reason",
            "channel",
            "rewarded_at",
            "created_at",
        ),
    }


def loyalty_erase(contact: Contact, erasure: Erasure) -> None:
    counterparts = set(
        Referral.objects.filter(referrer=contact).values_list("friend_id", flat=True)
    ) | set(Referral.objects.filter(friend=contact).values_list("referrer_id", flat=True))
    scope = Q(contact=contact) | Q(contact_id__in=counterparts)
    for entry in erasure.matching(LedgerEntry.objects.filter(scope), "reason", "source_id"):
        entry.reason = erasure.text(entry.reason)
        entry.source_id = erasure.text(entry.source_id)
        entry.save(update_fields=["reason", "source_id"])
    for model, fields in ((Referral, ["reason"]), (TierChange, ["reason"])):
        rows = model.objects.filter(
            Q(referrer=contact) | Q(friend=contact) if model is Referral else Q(contact=contact)
        )
        for row in erasure.matching(rows, *fields):
            for name in fields:
                setattr(row, name, erasure.text(getattr(row, name)))
            row.save(update_fields=fields)
    refusals = ReferralRefusal.objects.filter(
        Q(friend=contact) | Q(email__in=erasure.emails) | Q(code__contact=contact)
    )
    for refusal in refusals:
        refusal.email = "" if refusal.email.strip().lower() in erasure.emails else refusal.email
        refusal.reason = erasure.text(refusal.reason)
        refusal.save(update_fields=["email", "reason"])
