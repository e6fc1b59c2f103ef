"""Loyalty in segments and campaign conditions: tier, points balance, store credit
balance, credit expiring within N days, referral count — so "members of tier Rouge" or
"has unused credit" is an audience, and a sequence can branch on a balance.

Registered into crm.rules.CONDITIONS and campaigns.steps.CONDITION_KINDS from the app's
ready(): crm and campaigns never import loyalty. Built from crm.rules' building blocks
(the same operators, errors with the node's path, scoping for incremental refreshes)."""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, F, Q, Sum

from crm.rules import (
    OPS,
    RuleError,
    _allowed_keys,
    _days,
    _having,
    _ids,
    _number,
    _op,
    _zero_aware,
)
from loyalty.models import POINTS, ContactTier, LedgerEntry, Referral, Tier

NUMBER_OPS = OPS["number"]


def _live_grants(now: dt.datetime):
    return LedgerEntry.objects.filter(remaining__gt=0).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


def tier_condition(node, path, state, now, _se) -> Q:
    """{"type": "tier", "op": "in" | "not_in" | "eq" | "neq", "value": "Rouge" | [...]}"""
    _allowed_keys(node, path, {"op", "value"})
    op = _op(node, path, {"eq", "neq", "in", "not_in"})
    value = node.get("value")
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(n, str) and n for n in names):
        raise RuleError("value is a tier name (or a list of names).", f"{path}.value")
    known = set(Tier.objects.filter(name__in=names).values_list("name", flat=True))
    missing = [n for n in names if n not in known]
    if missing:
        raise RuleError(f"No tier named {missing[0]!r}.", f"{path}.value")
    state.depends_on.add("loyalty")
    q = _ids(ContactTier.objects.filter(tier__name__in=names).values("contact_id"))
    return ~q if op in ("neq", "not_in") else q


def balance_condition(node, path, state, now, _se) -> Q:
    """{"type": "loyalty_balance", "unit": "points" | "EUR", "op": "gte", "value": 100}:
    what may be spent now (expired grants and redeem windows not yet open left out)."""
    _allowed_keys(node, path, {"unit", "op", "value"})
    unit = node.get("unit", POINTS)
    if unit != POINTS and not (isinstance(unit, str) and len(unit) == 3 and unit.isupper()):
        raise RuleError('unit is "points" or a currency code such as EUR.', f"{path}.unit")
    op = _op(node, path, NUMBER_OPS)
    value = _number(node.get("value"), path)
    state.depends_on.add("loyalty")
    state.time_based = True  # balances drop when grants expire
    grants = (
        _live_grants(now)
        .filter(unit=unit)
        .filter(Q(redeemable_from__isnull=True) | Q(redeemable_from__lte=now))
    )
    return _zero_aware(lambda o, v: _having(grants, Sum("remaining"), o, v), op, value, 0)


def credit_expiring_condition(node, path, state, now, _se) -> Q:
    """{"type": "credit_expiring", "days": 7}: unused store credit that expires within the
    next N days."""
    _allowed_keys(node, path, {"days"})
    days = _days(node, path, state, key="days")
    state.depends_on.add("loyalty")
    grants = (
        _live_grants(now).exclude(unit=POINTS).filter(expires_at__lte=now + dt.timedelta(days=days))
    )
    return _ids(grants.values("contact_id"))


def referral_count_condition(node, path, state, now, _se) -> Q:
    """{"type": "referral_count", "op": "gte", "value": 1, "status": "rewarded"?}"""
    _allowed_keys(node, path, {"op", "value", "status"})
    op = _op(node, path, NUMBER_OPS)
    value = _number(node.get("value"), path)
    status = node.get("status")
    if status is not None and status not in Referral.Status.values:
        raise RuleError(f"status is one of {', '.join(Referral.Status.values)}.", f"{path}.status")
    state.depends_on.add("loyalty")
    referrals = Referral.objects.filter(status=status) if status else Referral.objects.all()
    referrals = referrals.annotate(contact_id=F("referrer_id"))
    return _zero_aware(lambda o, v: _having(referrals, Count("pk"), o, v), op, value, 0)


SEGMENT_CONDITIONS = {
    "tier": tier_condition,
    "loyalty_balance": balance_condition,
    "credit_expiring": credit_expiring_condition,
    "referral_count": referral_count_condition,
}


# --- campaign conditions --------------------------------------------------------------------
def _clean_rule_node(kind: str):
    def clean(config: dict, path: str) -> None:
        from crm.rules import compile_rules

        node = {k: v for k, v in config.items() if k != "kind"}
        compile_rules({"type": kind, **node})

    return clean


def _check(kind: str):
    def check(config, items, batch):
        from crm.models import Contact
        from crm.rules import compile_rules

        node = {k: v for k, v in config.items() if k != "kind"}
        q = compile_rules({"type": kind, **node}, now=batch.now).q
        matching = set(
            Contact.objects.filter(q, pk__in={i.contact_id for i in items}).values_list(
                "pk", flat=True
            )
        )
        return {i.pk: i.contact_id in matching for i in items}

    return check


def register() -> None:
    from campaigns.extend import condition_kind
    from crm.rules import CONDITIONS

    CONDITIONS.update(SEGMENT_CONDITIONS)
    for kind in SEGMENT_CONDITIONS:
        condition_kind(kind, _clean_rule_node(kind))(_check(kind))
