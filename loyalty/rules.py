"""Loyalty in segments and campaign conditions: tier, points balance, store credit
balance, credit expiring within N days, referral count — so "members of tier Rouge" or
"has unused credit" is an audience, and a sequence can branch on a balance.

Registered into crm (crm.rules.condition_register) and campaigns
(campaigns.extend.condition_kind) from the app's ready(): crm and campaigns never import
loyalty. Built from crm.rules' published building blocks (RuleContext, the same
operators, errors with the node's path, scoping for incremental refreshes)."""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, F, Q, Sum
from django.utils.translation import gettext_lazy as _

from campaigns.extend import condition_kind
from crm.extend import (
    OPS,
    Field,
    Kind,
    RuleContext,
    RuleError,
    allowed_keys,
    compile_rules,
    condition_register,
    kind_describe,
    kind_source_register,
    rule_number,
    rule_op,
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


def credit_expiring_condition(node: dict, ctx: RuleContext) -> Q:
    """{"type": "credit_expiring", "days": 7}: unused store credit that expires within the
    next N days."""
    path, now = ctx.path, ctx.now
    allowed_keys(node, path, {"days"})
    days = ctx.days(node, key="days")
    ctx.depends_on("loyalty")
    grants = LedgerEntry.objects.expiring(now, dt.timedelta(days=days)).exclude(unit=POINTS)
    return ctx.contacts_with(grants.values("contact_id"))


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


_COMPARE = Field(
    "op",
    "choice",
    _("Is"),
    required=True,
    choices=(
        ("gte", _("at least")),
        ("gt", _("more than")),
        ("eq", _("exactly")),
        ("neq", _("not")),
        ("lt", _("less than")),
        ("lte", _("at most")),
    ),
    default="gte",
)

# What each condition takes, as the condition step's editor shows it (crm.kinds); the same
# node is a segment condition, so these fit its editor too.
DESCRIPTIONS = {
    "tier": Kind(
        "tier",
        _("Loyalty tier"),
        help=_("Yes when the contact is (or is not) in the tier."),
        fields=(
            Field(
                "op",
                "choice",
                _("Is"),
                required=True,
                choices=(("eq", _("in the tier")), ("neq", _("not in the tier"))),
                default="eq",
            ),
            Field("value", "ref", _("Tier"), required=True, source="tiers"),
        ),
    ),
    "loyalty_balance": Kind(
        "loyalty_balance",
        _("Points or credit balance"),
        help=_("Compares what the contact can spend now (expired points left out)."),
        fields=(
            Field(
                "unit",
                "text",
                _("Points or currency"),
                help=_("points, or a currency code such as EUR for store credit."),
                default=POINTS,
            ),
            _COMPARE,
            Field("value", "number", _("Amount"), required=True, minimum=0, default=100),
        ),
    ),
    "credit_expiring": Kind(
        "credit_expiring",
        _("Store credit expiring soon"),
        help=_("Yes when the contact has unused store credit that expires within the days."),
        fields=(
            Field(
                "days",
                "integer",
                _("Within (days)"),
                required=True,
                minimum=1,
                maximum=3650,
                default=7,
            ),
        ),
    ),
    "referral_count": Kind(
        "referral_count",
        _("Friends referred"),
        help=_("Compares how many friends the contact has referred."),
        fields=(
            _COMPARE,
            Field("value", "integer", _("Friends"), required=True, minimum=0, default=1),
            Field(
                "status",
                "choice",
                _("Counting only"),
                help=_("Empty: every referral."),
                choices=tuple((value, label) for value, label in Referral.Status.choices),
            ),
        ),
    ),
}


def tiers() -> list[tuple[object, str]]:
    """The tiers by name, lowest first (kind_source "tiers")."""
    return [(name, name) for name in Tier.objects.order_by("rank").values_list("name", flat=True)]


def register() -> None:
    kind_source_register("tiers", tiers)
    for kind, builder in SEGMENT_CONDITIONS.items():
        condition_register(kind, builder)
        condition_kind(kind, _clean_rule_node(kind))(_check(kind))
        kind_describe("condition", DESCRIPTIONS[kind])
