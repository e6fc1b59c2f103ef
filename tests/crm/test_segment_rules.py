"""Segment rules: every condition family, nested groups, negation, empty results and each
validation error, on a small hand-made shop."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from crm.errors import KeepersError
from crm.models import ClvModelFit, Contact, ContactClv, Segment
from crm.rules import RuleError, compile_rules
from crm.services.consent import consent_record
from crm.services.contacts import Identity, contact_create
from crm.services.events import EventIn, events_ingest
from crm.services.meddic import scorecard_update
from crm.services.orders import OrderIn, order_refund, orders_place
from crm.services.rfm import rfm_recompute
from crm.services.segments import segment_members_add, segment_refresh, segment_save

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def order(email, ext, total, days, lines=(), currency="USD"):
    orders_place(
        [
            OrderIn(
                external_id=ext,
                identity=Identity(email=email),
                total=Decimal(total),
                currency=currency,
                ordered_at=ago(days),
                lines=list(lines),
                attributes={},
            )
        ]
    )


def event(email, name, days, n=1, **props):
    events_ingest(
        [
            EventIn(
                name=name,
                identity=Identity(email=email),
                properties=props,
                occurred_at=ago(days),
                message_id=f"{email}-{name}-{days}-{k}-{props}",
            )
            for k in range(n)
        ]
    )


@pytest.fixture
def shop():
    """ann: loyal shoe lover in Paris; bob: one old order, browses shoes; cy: subscriber in
    Tokyo with a birthday next week; di: refunded everything; ed: MEDDIC lead."""
    with time_machine.travel(NOW, tick=False):
        contact_create(
            email="ann@example.com",
            timezone="Europe/Paris",
            locale="fr-FR",
            channel="social",
            attributes={"plan": "gold", "age": 41, "signup": "2026-06-01"},
            tags=["vip"],
        )
        for k in range(5):
            order(
                "ann@example.com",
                f"a{k}",
                "120",
                10 + 20 * k,
                lines=[
                    {
                        "product_id": "SHOE-1",
                        "name": "Boot",
                        "category": "Shoes",
                        "quantity": 1,
                        "price": Decimal("120"),
                        "currency": "USD",
                        "url": "",
                        "image_url": "",
                    }
                ],
            )
        event("ann@example.com", "Product Viewed", 2, n=4, category="shoes")
        consent_record(contact=Contact.objects.get(email="ann@example.com"), status="granted")

        contact_create(
            email="bob@example.com",
            timezone="America/New_York",
            channel="paid_search",
            attributes={"plan": "free", "age": "29"},
        )
        order("bob@example.com", "b1", "30", 200)
        event("bob@example.com", "Product Viewed", 1, n=2, category="shoes")
        event("bob@example.com", "Product Viewed", 3, category="hats")
        consent_record(contact=Contact.objects.get(email="bob@example.com"), status="granted")
        consent_record(contact=Contact.objects.get(email="bob@example.com"), status="withdrawn")

        contact_create(
            email="cy@example.com",
            timezone="Asia/Tokyo",
            locale="ja",
            birthday=datetime(1990, 6, 20).date(),
        )
        event("cy@example.com", "Email Opened", 5)

        contact_create(email="di@example.com", timezone="Europe/Paris")
        order("di@example.com", "d1", "80", 20)
        order_refund(order_external_id="d1")

        ed = contact_create(email="ed@example.com", external_id="lead-1")
        scorecard_update(
            contact=ed,
            changes={"metrics_status": 2, "champion_status": 2, "economic_buyer_status": 2},
            via="test",
        )
        rfm_recompute(now=NOW)
    return NOW


def who(rules) -> list[str]:
    with time_machine.travel(NOW, tick=False):
        q = compile_rules(rules).q
    return sorted(
        e.split("@")[0] for e in Contact.objects.filter(q).values_list("email", flat=True)
    )


def test_contact_fields(shop):
    assert who({"type": "field", "field": "timezone", "op": "eq", "value": "europe/paris"}) == [
        "ann",
        "di",
    ]
    assert who({"type": "field", "field": "locale", "op": "in", "value": ["ja", "fr-FR"]}) == [
        "ann",
        "cy",
    ]
    assert who({"type": "field", "field": "email", "op": "contains", "value": "ED@"}) == ["ed"]
    assert who({"type": "field", "field": "channel", "op": "neq", "value": "social"}) == [
        "bob",
        "cy",
        "di",
        "ed",
    ]
    assert who({"type": "field", "field": "external_id", "op": "exists", "value": True}) == ["ed"]
    assert who({"type": "field", "field": "stage", "op": "in", "value": ["loyal", "lapsed"]}) == [
        "ann",
        "bob",
    ]
    assert who({"type": "field", "field": "created_at", "op": "within_last_days", "value": 1}) == [
        "ann",
        "bob",
        "cy",
        "di",
        "ed",
    ]
    assert who({"type": "field", "field": "created_at", "op": "lt", "value": "2026-01-01"}) == []


def test_birthday_in_the_next_days_and_month(shop):
    assert who(
        {"type": "field", "field": "birthday", "op": "birthday_in_next_days", "value": 7}
    ) == ["cy"]
    assert (
        who({"type": "field", "field": "birthday", "op": "birthday_in_next_days", "value": 3}) == []
    )
    assert who({"type": "field", "field": "birthday", "op": "birthday_in_month", "value": 6}) == [
        "cy"
    ]
    assert who(
        {"not": {"type": "field", "field": "birthday", "op": "birthday_in_next_days", "value": 7}}
    ) == ["ann", "bob", "di", "ed"]


def test_birthday_window_across_new_year():
    with time_machine.travel(datetime(2026, 12, 28, tzinfo=UTC), tick=False):
        contact_create(email="jan@example.com", birthday=datetime(1980, 1, 2).date())
        contact_create(email="dec@example.com", birthday=datetime(1980, 12, 29).date())
        contact_create(email="mar@example.com", birthday=datetime(1980, 3, 1).date())
        q = compile_rules(
            {"type": "field", "field": "birthday", "op": "birthday_in_next_days", "value": 7}
        ).q
        assert sorted(Contact.objects.filter(q).values_list("email", flat=True)) == [
            "dec@example.com",
            "jan@example.com",
        ]


def test_a_29_february_birthday_is_in_the_window_on_the_28th_in_other_years():
    """Segments count a birthday in the contact's own zone, and 29 February on the 28th
    when the year has none (the rule date triggers and birthday bonuses share)."""
    contact_create(email="utc@example.com", birthday=datetime(1992, 2, 29).date())
    contact_create(
        email="tokyo@example.com", birthday=datetime(1992, 2, 29).date(), timezone="Asia/Tokyo"
    )

    def within(days: int, now: datetime) -> list[str]:
        rule = {"type": "field", "field": "birthday", "op": "birthday_in_next_days", "value": days}
        q = compile_rules(rule, now=now).q
        return sorted(Contact.objects.filter(q).values_list("email", flat=True))

    afternoon = datetime(2027, 2, 25, 16, tzinfo=UTC)  # 2027 has no 29 February
    # UTC: 25 Feb → 27 Feb; Tokyo (01:00 on the 26th): 26 Feb → 28 Feb, the day it is held
    assert within(2, afternoon) == ["tokyo@example.com"]
    assert within(3, afternoon) == ["tokyo@example.com", "utc@example.com"]
    assert within(1, datetime(2027, 3, 1, 12, tzinfo=UTC)) == []  # held on the 28th: past
    assert within(1, datetime(2028, 2, 28, 12, tzinfo=UTC)) == [  # 2028 has one
        "tokyo@example.com",
        "utc@example.com",
    ]
    assert within(1, datetime(2028, 3, 1, 1, tzinfo=UTC)) == []


def test_attributes(shop):
    assert who({"type": "attribute", "key": "plan", "op": "eq", "value": "gold"}) == ["ann"]
    assert who({"type": "attribute", "key": "plan", "op": "neq", "value": "gold"}) == [
        "bob",
        "cy",
        "di",
        "ed",
    ]
    assert who({"type": "attribute", "key": "plan", "op": "in", "value": ["gold", "free"]}) == [
        "ann",
        "bob",
    ]
    assert who({"type": "attribute", "key": "plan", "op": "exists", "value": True}) == [
        "ann",
        "bob",
    ]
    assert who({"type": "attribute", "key": "plan", "op": "contains", "value": "OL"}) == ["ann"]
    # numbers stored as JSON numbers or as numeric strings (CSV imports) compare as numbers
    assert who({"type": "attribute", "key": "age", "op": "gt", "value": 30}) == ["ann"]
    assert who({"type": "attribute", "key": "age", "op": "lte", "value": 29}) == ["bob"]
    assert who({"type": "attribute", "key": "signup", "op": "within_last_days", "value": 30}) == [
        "ann"
    ]


def test_tags_consent_and_meddic(shop):
    assert who({"type": "tag", "op": "has", "value": "vip"}) == ["ann"]
    assert who({"type": "tag", "op": "has_not", "value": "vip"}) == ["bob", "cy", "di", "ed"]
    assert who({"type": "consent", "op": "is", "value": "granted"}) == ["ann"]
    assert who({"type": "consent", "op": "is", "value": "withdrawn"}) == ["bob"]
    assert who({"type": "consent", "op": "is", "value": "none"}) == ["cy", "di", "ed"]
    assert who({"type": "meddic", "op": "gte", "value": 50}) == ["ed"]
    assert who({"type": "meddic", "op": "lt", "value": 50}) == ["ann", "bob", "cy", "di"]


def test_events(shop):
    shoes = {
        "type": "event",
        "name": "Product Viewed",
        "op": "at_least",
        "count": 2,
        "days": 7,
        "where": {"category": "shoes"},
    }
    assert who(shoes) == ["ann", "bob"]
    assert who({**shoes, "count": 3}) == ["ann"]
    assert who(
        {"type": "event", "name": "Product Viewed", "op": "at_most", "count": 2, "days": 7}
    ) == ["cy", "di", "ed"]
    assert who(
        {"type": "event", "name": "Product Viewed", "op": "at_least", "count": 1, "days": 2}
    ) == ["ann", "bob"]
    assert who({"type": "event", "name": "Email Opened", "op": "none", "days": 30}) == [
        "ann",
        "bob",
        "di",
        "ed",
    ]


def test_orders(shop):
    assert who({"type": "order", "measure": "count", "op": "gte", "value": 5}) == ["ann"]
    assert who({"type": "order", "measure": "count", "op": "eq", "value": 0}) == ["cy", "di", "ed"]
    assert who({"type": "order", "measure": "total_spend", "op": "gt", "value": 500}) == ["ann"]
    assert who({"type": "order", "measure": "total_spend", "op": "lt", "value": 100}) == [
        "bob",
        "cy",
        "di",
        "ed",
    ]
    assert who({"type": "order", "measure": "average_order_value", "op": "lt", "value": 100}) == [
        "bob"
    ]
    assert who(
        {"type": "order", "measure": "spend_last_days", "op": "gte", "value": 200, "days": 60}
    ) == ["ann"]
    assert who(
        {"type": "order", "measure": "first_order_at", "op": "lt", "value": "2026-01-01"}
    ) == ["bob"]
    assert who(
        {"type": "order", "measure": "last_order_at", "op": "within_last_days", "value": 30}
    ) == ["ann"]
    assert who({"type": "bought", "category": "shoes"}) == ["ann"]
    assert who({"type": "bought", "product_id": "SHOE-1", "op": "no"}) == ["bob", "cy", "di", "ed"]


def test_rfm(shop):
    assert who({"type": "rfm", "score": "recency", "op": "gte", "value": 1}) == ["ann", "bob"]
    assert who({"type": "rfm", "score": "frequency", "op": "eq", "value": 5}) == ["ann"]
    assert who(
        {"type": "rfm", "score": "group", "op": "in", "value": ["champions", "cant_lose", "loyal"]}
    ) == ["ann"]


def test_clv(shop):
    # given predictions for the two customers in the base currency (di refunded everything)
    fit = ClvModelFit.objects.create(as_of=NOW.date(), fitted_at=NOW, currency="USD")
    for email, alive, value in [("ann@example.com", 0.8, 900.0), ("bob@example.com", 0.1, 12.5)]:
        ContactClv.objects.create(
            contact=Contact.objects.get(email=email),
            fit=fit,
            **dict.fromkeys(("t_x", "T", "zbar", "expected_spend"), 1.0),
            **dict.fromkeys(("purchases_30d", "purchases_90d", "purchases_365d"), 0.5),
            x=1,
            probability_alive=alive,
            predicted_clv=value,
        )
    slipping = {"type": "clv", "measure": "probability_alive", "op": "lt", "value": 0.3}
    assert who(slipping) == ["bob"]
    assert who({**slipping, "op": "gte"}) == ["ann"]
    # no prediction, no value: neither side of a comparison, nor neq; `not` reaches them
    assert who({**slipping, "op": "neq", "value": 0.5}) == ["ann", "bob"]
    assert who({"not": slipping}) == ["ann", "cy", "di", "ed"]
    assert who({"type": "clv", "measure": "predicted_clv", "op": "gt", "value": 100}) == ["ann"]
    assert compile_rules(slipping).depends_on == {"clv"}


def test_segment_membership_condition(shop):
    with time_machine.travel(NOW, tick=False):
        vip = segment_save(name="VIP", rules={"type": "tag", "op": "has", "value": "vip"})
        segment_refresh(segment_id=vip.pk)
    assert who({"type": "segment", "op": "member", "segment": vip.pk}) == ["ann"]
    assert who({"type": "segment", "op": "not_member", "segment": vip.pk}) == [
        "bob",
        "cy",
        "di",
        "ed",
    ]


def test_nested_groups_negation_and_empty(shop):
    rules = {
        "all": [
            {"type": "order", "measure": "count", "op": "gte", "value": 1},
            {
                "any": [
                    {
                        "type": "event",
                        "name": "Product Viewed",
                        "op": "at_least",
                        "count": 1,
                        "days": 7,
                        "where": {"category": "hats"},
                    },
                    {"not": {"type": "consent", "op": "is", "value": "withdrawn"}},
                ]
            },
        ]
    }
    assert who(rules) == ["ann", "bob"]
    assert who({"all": [rules, {"not": rules}]}) == []
    assert who({"not": {"not": {"type": "tag", "op": "has", "value": "vip"}}}) == ["ann"]


@pytest.mark.parametrize(
    ("rules", "path", "words"),
    [
        ([], "rules", "The rules are empty: add at least one condition"),
        ("all", "rules", "JSON object"),
        ({"all": []}, "rules.all", "non-empty list"),
        ({"all": [{"type": "colour"}]}, "rules.all[0].type", "Unknown condition type"),
        (
            {"type": "field", "field": "shoe", "op": "eq", "value": "x"},
            "rules.field",
            "Unknown contact field",
        ),
        (
            {"type": "field", "field": "stage", "op": "contains", "value": "x"},
            "rules.op",
            "does not apply",
        ),
        (
            {"type": "field", "field": "stage", "op": "eq", "value": "vip"},
            "rules.value",
            "Unknown stage",
        ),
        (
            {"type": "field", "field": "created_at", "op": "gt", "value": "soon"},
            "rules.value",
            "ISO date",
        ),
        (
            {"any": [{"type": "event", "name": "X", "op": "at_least", "count": 0}]},
            "rules.any[0].count",
            "whole number",
        ),
        (
            {"type": "event", "name": "X", "op": "at_least", "count": 1, "days": -1},
            "rules.days",
            "whole number",
        ),
        (
            {"type": "order", "measure": "profit", "op": "gt", "value": 1},
            "rules.measure",
            "Unknown order measure",
        ),
        (
            {"type": "order", "measure": "count", "op": "gt", "value": "many"},
            "rules.value",
            "not a number",
        ),
        (
            {"type": "rfm", "score": "group", "op": "in", "value": ["heroes"]},
            "rules.value",
            "Unknown RFM group",
        ),
        (
            {"type": "clv", "measure": "margin", "op": "gt", "value": 1},
            "rules.measure",
            "Unknown CLV measure",
        ),
        (
            {"type": "clv", "measure": "probability_alive", "op": "lt", "value": 30},
            "rules.value",
            "from 0 to 1",
        ),
        (
            {"type": "clv", "measure": "predicted_clv", "op": "within_last_days", "value": 1},
            "rules.op",
            "does not apply",
        ),
        ({"type": "consent", "op": "is", "value": "maybe"}, "rules.value", "Consent is one of"),
        ({"type": "segment", "op": "member", "segment": 999999}, "rules.segment", "no segment"),
        ({"type": "tag", "op": "has", "value": "x", "colour": 1}, "rules.colour", "Unknown key"),
        (
            {"all": [{"type": "tag", "op": "has", "value": "x"}], "any": []},
            "rules",
            "exactly one key",
        ),
    ],
)
def test_validation_errors_point_at_the_node(rules, path, words):
    with pytest.raises(RuleError) as error:
        segment_save(name="Bad", rules=rules)
    assert error.value.path == path
    assert words in error.value.message


def test_a_cycle_is_refused_with_a_clear_message():
    a = segment_save(name="A", rules={"type": "tag", "op": "has", "value": "x"})
    b = segment_save(name="B", rules={"type": "segment", "op": "member", "segment": a.pk})
    with pytest.raises(KeepersError) as error:
        segment_save(
            segment=a, name="A", rules={"type": "segment", "op": "member", "segment": b.pk}
        )
    assert error.value.code == "segment_cycle"
    assert "A → B → A" in error.value.message
    with pytest.raises(KeepersError):
        segment_save(
            segment=a, name="A", rules={"type": "segment", "op": "member", "segment": a.pk}
        )
    assert Segment.objects.get(pk=a.pk).rules == {"type": "tag", "op": "has", "value": "x"}


def test_static_segments_take_members_by_hand_only(shop):
    static = segment_save(name="Imported list", kind="static")
    ids = list(
        Contact.objects.filter(email__in=["ann@example.com", "cy@example.com"]).values_list(
            "pk", flat=True
        )
    )
    assert segment_members_add(segment=static, contact_ids=ids) == 2
    assert segment_members_add(segment=static, contact_ids=ids) == 0
    with pytest.raises(KeepersError):
        segment_save(
            name="Static with rules",
            kind="static",
            rules={"type": "tag", "op": "has", "value": "x"},
        )
    dynamic = segment_save(name="Dyn", rules={"type": "tag", "op": "has", "value": "vip"})
    with pytest.raises(KeepersError) as error:
        segment_members_add(segment=dynamic, contact_ids=ids)
    assert error.value.code == "not_static"
