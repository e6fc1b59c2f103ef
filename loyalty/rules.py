"""Loyalty in segments and campaign conditions: tier, points balance, store credit
balance, credit expiring within N days, referral count — so "members of tier Rouge" or
"has unused credit" is an audience, and a sequence can branch on a balance.

Registered into crm (crm.rules.condition_register) and campaigns
(campaigns.extend.condition_kind) from the app's ready(): crm and campaigns never import
loyalty. Built from crm.rules' published building blocks (RuleContext, the same
operators, errors with the node's path, scoping for incremental refreshes)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Count, F, Q, Sum
from django.utils.translation import gettext_lazy as _

from campaigns.extend import condition_kind
from crm.extend import (
    NUMBER_OP_NAMES,
    OPS,
    Field,
    RuleContext,
    RuleError,
    allowed_keys,
    compile_rules,
    condition_register,
    days_field,
    kind_describe,
    kind_described,
    kind_source_register,
    op_field,
    rule_number,
    rule_op,
    segment_condition_describe,
    zero_aware,
)
from crm.models import Contact
from loyalty.models import POINTS, ContactTier, LedgerEntry, Referral, Tier

NUMBER_OPS = OPS["number"]


def tier_condition(node: dict, ctx: RuleContext) -> Q:
    """{"type": "tier", "op": "in" | "not_in" | "eq" | "neq", "value": "Rouge" | [...]}"""
    path = ctx.path
    allowed_keys(node, path, {"op", "value"})
    op = rule_op(node, path, {"eq", "neq", "in", "not_in"})
    value = node.get("value")
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(n, str) and n for n in names):
        raise RuleError("value is a tier name (or a list of names).", f"{path}.value")
    known = set(Tier.objects.filter(name__in=names).values_list("name", flat=True))
    missing = [n for n in names if n not in known]
    if missing:
        raise RuleError(f"No tier named {missing[0]!r}.", f"{path}.value")
    ctx.depends_on("loyalty")
    q = ctx.contacts_with(ContactTier.objects.filter(tier__name__in=names).values("contact_id"))
    return ~q if op in ("neq", "not_in") else q


segment_condition_describe(
    "tier",
    _("Loyalty tier"),
    op_field("eq", "neq", "in", "not_in"),
    Field("value", "ref", _("Tier"), required=True, source="tiers", when={"op": ("eq", "neq")}),
    Field(
        "value", "refs", _("Tiers"), required=True, source="tiers", when={"op": ("in", "not_in")}
    ),
    example={"op": "eq", "value": "Gold"},
    group=_("Loyalty"),
)


def balance_condition(node: dict, ctx: RuleContext) -> Q:
    """{"type": "loyalty_balance", "unit": "points" | "EUR", "op": "gte", "value": 100}:
    what may be spent now (expired grants and redeem windows not yet open left out)."""
    path, now = ctx.path, ctx.now
    allowed_keys(node, path, {"unit", "op", "value"})
    unit = node.get("unit", POINTS)
    if unit != POINTS and not (isinstance(unit, str) and len(unit) == 3 and unit.isupper()):
        raise RuleError('unit is "points" or a currency code such as EUR.', f"{path}.unit")
    op = rule_op(node, path, NUMBER_OPS)
    value = rule_number(node.get("value"), path)
    ctx.depends_on("loyalty")
    ctx.drifts()  # balances drop when grants expire
    grants = LedgerEntry.objects.spendable(now).filter(unit=unit)
    return zero_aware(lambda o, v: ctx.having(grants, Sum("remaining"), o, v), op, value, 0)


segment_condition_describe(
    "loyalty_balance",
    _("Points or store-credit balance"),
    Field(
        "unit",
        "ref",
        _("Balance"),
        required=True,
        source="ledger_units",
        default=POINTS,
        help=_("Points, or store credit in a currency."),
    ),
    op_field(*NUMBER_OP_NAMES),
    Field("value", "number", _("Amount"), required=True, minimum=0, default=100),
    example={"unit": POINTS, "op": "gte", "value": 100},
    help=_("What may be spent now: expired grants and not-yet-redeemable ones left out."),
    group=_("Loyalty"),
)


def credit_expiring_condition(node: dict, ctx: RuleContext) -> Q:
    """{"type": "credit_expiring", "days": 7}: unused store credit that expires within the
    next N days."""
    path, now = ctx.path, ctx.now
    allowed_keys(node, path, {"days"})
    days = ctx.days(node, key="days")
    ctx.depends_on("loyalty")
    grants = LedgerEntry.objects.expiring(now, dt.timedelta(days=days)).exclude(unit=POINTS)
    return ctx.contacts_with(grants.values("contact_id"))


segment_condition_describe(
    "credit_expiring",
    _("Store credit expiring soon"),
    days_field("days", label=_("Expires within … days")),
    example={"days": 7},
    help=_("Has unused store credit that expires within the next N days."),
    group=_("Loyalty"),
)


def referral_count_condition(node: dict, ctx: RuleContext) -> Q:
    """{"type": "referral_count", "op": "gte", "value": 1, "status": "rewarded"?}"""
    path = ctx.path
    allowed_keys(node, path, {"op", "value", "status"})
    op = rule_op(node, path, NUMBER_OPS)
    value = rule_number(node.get("value"), path)
    status = node.get("status")
    if status is not None and status not in Referral.Status.values:
        raise RuleError(f"status is one of {', '.join(Referral.Status.values)}.", f"{path}.status")
    ctx.depends_on("loyalty")
    referrals = Referral.objects.filter(status=status) if status else Referral.objects.all()
    referrals = referrals.annotate(contact_id=F("referrer_id"))
    return zero_aware(lambda o, v: ctx.having(referrals, Count("pk"), o, v), op, value, 0)


SEGMENT_CONDITIONS = {
    "tier": tier_condition,
    "loyalty_balance": balance_condition,
    "credit_expiring": credit_expiring_condition,
    "referral_count": referral_count_condition,
}


# --- campaign conditions --------------------------------------------------------------------
def _clean_rule_node(kind: str):
    def clean(config: dict, path: str) -> None:
        node = {k: v for k, v in config.items() if k != "kind"}
        compile_rules({"type": kind, **node})

    return clean


segment_condition_describe(
    "referral_count",
    _("Friends referred"),
    op_field(*NUMBER_OP_NAMES),
    Field("value", "integer", _("Friends"), required=True, minimum=0, default=1),
    Field(
        "status",
        "choice",
        _("Referral status"),
        choices=tuple(Referral.Status.choices),
        help=_("Leave empty to count every referral."),
    ),
    example={"op": "gte", "value": 1},
    group=_("Loyalty"),
)


def _check(kind: str):
    def check(config, items, batch):
        node = {k: v for k, v in config.items() if k != "kind"}
        q = compile_rules({"type": kind, **node}, now=batch.now).q
        matching = set(
            Contact.objects.filter(q, pk__in={i.contact_id for i in items}).values_list(
                "pk", flat=True
            )
        )
        return {i.pk: i.contact_id in matching for i in items}

    return check


def tiers_options() -> list[tuple[str, str]]:
    return [(name, name) for name in Tier.objects.order_by("rank").values_list("name", flat=True)]


def ledger_units_options() -> list[tuple[str, str]]:
    """Points, the shop's currency and those of recent ledger entries (a bounded read)."""
    units = set(LedgerEntry.objects.order_by("-id").values_list("unit", flat=True)[:5000])
    units |= {POINTS, settings.KEEPERS_BASE_CURRENCY}
    currencies = sorted(units - {POINTS})
    return [
        (POINTS, str(_("points"))),
        *((c, str(_("store credit in %s")) % c) for c in currencies),
    ]


def register() -> None:
    kind_source_register("tiers", tiers_options)
    kind_source_register("ledger_units", ledger_units_options)
    for kind, builder in SEGMENT_CONDITIONS.items():
        condition_register(kind, builder)
        condition_kind(kind, _clean_rule_node(kind))(_check(kind))
        # the condition step takes the same node, so its editor shows the same fields
        kind_describe("condition", kind_described("segment_condition", kind))
