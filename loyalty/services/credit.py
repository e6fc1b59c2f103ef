"""Store credit: grants with amount, currency, reason, expiry and an optional redeem
window; redeemed against an order oldest-expiry-first, never more than the balance,
never across currencies (each currency is its own unit of the ledger)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from crm import clock
from crm.models import Contact
from crm.services.parsing import parse_currency
from loyalty.models import LedgerEntry
from loyalty.services.ledger import ledger_debit, ledger_grant


def credit_grant(
    *,
    contact: Contact,
    amount: Decimal,
    currency: str,
    reason: str,
    key: str,
    expires_at: dt.datetime | None = None,
    redeemable_from: dt.datetime | None = None,
    source_type: str = "api",
    source_id: str = "",
    staff_user=None,
    now: dt.datetime | None = None,
) -> tuple[LedgerEntry, bool]:
    """A welcome credit that expires in 14 days; shop cash redeemable only from a date."""
    now = now or clock.now()
    return ledger_grant(
        contact=contact,
        unit=parse_currency(currency, "currency"),
        amount=amount,
        reason=reason,
        key=f"credit:{key}",
        expires_at=expires_at,
        redeemable_from=redeemable_from,
        source_type=source_type,
        source_id=source_id,
        staff_user=staff_user,
        now=now,
    )


def credit_redeem(
    *,
    contact: Contact,
    amount: Decimal,
    currency: str,
    key: str,
    order_ref: str = "",
    now: dt.datetime | None = None,
) -> tuple[LedgerEntry, bool]:
    """Spend store credit on an order; refused (409) beyond the balance in that currency."""
    return ledger_debit(
        contact=contact,
        unit=parse_currency(currency, "currency"),
        amount=amount,
        reason=f"Redeemed on order {order_ref}" if order_ref else "Redeemed",
        key=f"redeem:{key}",
        source_type="order" if order_ref else "api",
        source_id=order_ref,
        now=now or clock.now(),
    )
