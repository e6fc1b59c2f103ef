"""Loyalty in segments and campaign conditions: tier, balances, expiring credit,
referral count."""

import datetime as dt
from decimal import Decimal

import pytest

from crm.models import Contact
from crm.rules import RuleError, compile_rules
from loyalty.models import POINTS, ContactTier, Referral, Tier
from loyalty.services.credit import credit_grant
from loyalty.services.ledger import ledger_grant
from loyalty.services.referrals import referral_code_for

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def person(email):
    return Contact.objects.create(email=email, created_at=T0, updated_at=T0)


def matching(rule) -> set[str]:
    q = compile_rules(rule, now=T0).q
    return set(Contact.objects.filter(q).values_list("email", flat=True))


def test_tier_balance_expiring_credit_and_referrals_are_audiences():
    ada, bo, cy = person("ada@x.com"), person("bo@x.com"), person("cy@x.com")
    rouge = Tier.objects.create(name="Rouge", rank=3, threshold=1000)
    Tier.objects.create(name="VIB", rank=2, threshold=350)
    ContactTier.objects.create(contact=ada, tier=rouge, since=T0, updated_at=T0)
    ledger_grant(contact=ada, unit=POINTS, amount=150, reason="x", key="a", now=T0)
    ledger_grant(contact=bo, unit=POINTS, amount=50, reason="x", key="b", now=T0)
    ledger_grant(
        contact=bo,
        unit=POINTS,
        amount=500,
        reason="old",
        key="b2",
        expires_at=T0 - DAY,
        now=T0 - 30 * DAY,
    )
    credit_grant(
        contact=bo,
        amount=Decimal("5"),
        currency="EUR",
        reason="x",
        key="c",
        expires_at=T0 + 3 * DAY,
        now=T0,
    )
    credit_grant(
        contact=cy,
        amount=Decimal("5"),
        currency="EUR",
        reason="x",
        key="c",
        expires_at=T0 + 30 * DAY,
        now=T0,
    )
    Referral.objects.create(
        referrer=cy, friend=ada, code=referral_code_for(cy), status="rewarded", created_at=T0
    )

    assert matching({"type": "tier", "op": "in", "value": ["Rouge"]}) == {"ada@x.com"}
    assert matching({"type": "tier", "op": "neq", "value": "Rouge"}) == {"bo@x.com", "cy@x.com"}
    assert matching({"type": "loyalty_balance", "unit": "points", "op": "gte", "value": 100}) == {
        "ada@x.com"
    }
    assert matching({"type": "loyalty_balance", "unit": "points", "op": "lt", "value": 100}) == {
        "bo@x.com",
        "cy@x.com",
    }
    assert matching({"type": "loyalty_balance", "unit": "EUR", "op": "gt", "value": 0}) == {
        "bo@x.com",
        "cy@x.com",
    }
    assert matching({"type": "credit_expiring", "days": 7}) == {"bo@x.com"}
    assert matching({"type": "referral_count", "op": "gte", "value": 1, "status": "rewarded"}) == {
        "cy@x.com"
    }
    assert matching({"type": "referral_count", "op": "eq", "value": 0}) == {"ada@x.com", "bo@x.com"}


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"type": "tier", "op": "in", "value": ["Gold"]}, "value"),
        ({"type": "loyalty_balance", "unit": "euros", "op": "gt", "value": 1}, "unit"),
        ({"type": "credit_expiring", "days": 0}, "days"),
        ({"type": "referral_count", "op": "gte", "value": 1, "status": "paid"}, "status"),
    ],
)
def test_bad_loyalty_rules_name_the_node(rule, path):
    Tier.objects.create(name="Rouge", rank=3, threshold=1000)
    with pytest.raises(RuleError) as error:
        compile_rules(rule, now=T0)
    assert error.value.field.endswith(path)


def test_a_campaign_condition_branches_on_a_balance():
    from campaigns.steps import CONDITION_KINDS

    clean, check = CONDITION_KINDS["loyalty_balance"]
    clean(
        {"kind": "loyalty_balance", "unit": "points", "op": "gte", "value": 100}, "steps[0].config"
    )
    ada, bo = person("ada@x.com"), person("bo@x.com")
    ledger_grant(contact=ada, unit=POINTS, amount=150, reason="x", key="a", now=T0)

    class Item:
        def __init__(self, pk, contact_id):
            self.pk, self.contact_id = pk, contact_id

    class Batch:
        now = T0

    result = check(
        {"kind": "loyalty_balance", "unit": "points", "op": "gte", "value": 100},
        [Item(1, ada.pk), Item(2, bo.pk)],
        Batch(),
    )
    assert result == {1: True, 2: False}
