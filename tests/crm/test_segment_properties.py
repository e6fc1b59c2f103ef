"""Property test: random rule trees over a small shop; the SQL the compiler builds must
select exactly the contacts a straightforward Python evaluation of the same rules does."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.models import Contact
from crm.rules import compile_rules
from crm.services.consent import consent_record
from crm.services.contacts import Identity, contact_create
from crm.services.events import EventIn, events_ingest
from crm.services.meddic import CRITERIA, scorecard_update
from crm.services.orders import OrderIn, orders_place

NOW = datetime(2026, 4, 1, 12, tzinfo=UTC)
ZONES = ["Europe/Paris", "Asia/Tokyo", "America/New_York", ""]
PLANS = ["gold", "free", None]
TAGS = ["vip", "club"]
EVENTS = ["Product Viewed", "Product Added"]
CATEGORIES = ["shoes", "hats"]


def build_shop() -> dict[int, dict]:
    """Twelve contacts with every combination the generator can ask about. Returns the
    facts Python evaluates, per contact id."""
    facts = {}
    with time_machine.travel(NOW, tick=False):
        for n in range(12):
            plan = PLANS[n % 3]
            tags = [t for k, t in enumerate(TAGS) if (n >> k) & 1]
            contact = contact_create(
                email=f"c{n}@example.com",
                timezone=ZONES[n % 4],
                channel=["social", "email"][n % 2],
                attributes={"plan": plan, "age": 20 + 3 * n} if plan else {"age": str(20 + 3 * n)},
                tags=tags,
            )
            consent = [None, "granted", "withdrawn"][n % 3]
            if consent:
                consent_record(contact=contact, status=consent)
            events = []
            for k in range(n % 5):
                events.append((EVENTS[k % 2], CATEGORIES[(n + k) % 2], 2 + 9 * k))
            events_ingest(
                [
                    EventIn(
                        name=name,
                        identity=Identity(email=contact.email),
                        properties={"category": cat},
                        occurred_at=NOW - timedelta(days=d),
                        message_id=f"{n}-{k}",
                    )
                    for k, (name, cat, d) in enumerate(events)
                ]
            )
            orders = [Decimal(40 * (k + 1)) for k in range(n % 4)]
            orders_place(
                [
                    OrderIn(
                        external_id=f"o{n}-{k}",
                        identity=Identity(email=contact.email),
                        total=total,
                        currency="USD",
                        ordered_at=NOW - timedelta(days=5 + k),
                        lines=[],
                        attributes={},
                    )
                    for k, total in enumerate(orders)
                ]
            )
            # MEDDIC: a third have no scorecard; the others a mix of statuses (0, 1, 2)
            statuses = [(n + k * (n % 4)) % 3 for k in range(len(CRITERIA))] if n % 3 else None
            if statuses:
                scorecard_update(
                    contact=contact,
                    changes={f"{c}_status": v for c, v in zip(CRITERIA, statuses, strict=True)},
                    via="test",
                )
            contact.refresh_from_db()
            facts[contact.pk] = {
                "meddic": {
                    "score": round(100 * sum(statuses) / 12) if statuses else 0,
                    "confirmed": statuses.count(2) if statuses else 0,
                },
                "timezone": contact.timezone,
                "channel": contact.channel,
                "stage": contact.stage,
                "attributes": contact.attributes,
                "tags": set(tags),
                "consent": consent or "none",
                "events": events,
                "orders": orders,
            }
    return facts


conditions = st.one_of(
    st.builds(
        lambda v: {"type": "field", "field": "timezone", "op": "eq", "value": v},
        st.sampled_from(ZONES[:3]),
    ),
    st.builds(
        lambda v: {"type": "field", "field": "channel", "op": "in", "value": v},
        st.lists(st.sampled_from(["social", "email", "direct"]), min_size=1, max_size=2),
    ),
    st.builds(
        lambda v: {"type": "field", "field": "stage", "op": "in", "value": v},
        st.lists(
            st.sampled_from(["subscriber", "first_time", "repeat", "loyal"]), min_size=1, max_size=3
        ),
    ),
    st.builds(
        lambda v: {"type": "attribute", "key": "plan", "op": "eq", "value": v},
        st.sampled_from(["gold", "free"]),
    ),
    st.builds(
        lambda b: {"type": "attribute", "key": "plan", "op": "exists", "value": b}, st.booleans()
    ),
    st.builds(
        lambda op, v: {"type": "attribute", "key": "age", "op": op, "value": v},
        st.sampled_from(["gt", "lte"]),
        st.integers(18, 60),
    ),
    st.builds(
        lambda op, v: {"type": "tag", "op": op, "value": v},
        st.sampled_from(["has", "has_not"]),
        st.sampled_from(TAGS),
    ),
    st.builds(
        lambda v: {"type": "consent", "op": "is", "value": v},
        st.sampled_from(["granted", "withdrawn", "none"]),
    ),
    st.builds(
        lambda name, op, count, days, cat: {
            "type": "event",
            "name": name,
            "op": op,
            "count": count,
            "days": days,
            **({"where": {"category": cat}} if cat else {}),
        },
        st.sampled_from(EVENTS),
        st.sampled_from(["at_least", "at_most"]),
        st.integers(1, 3),
        st.sampled_from([7, 15, 40]),
        st.sampled_from([None, *CATEGORIES]),
    ),
    st.builds(
        lambda measure, op, v: {"type": "order", "measure": measure, "op": op, "value": v},
        st.sampled_from(["count", "total_spend"]),
        st.sampled_from(["gt", "gte", "lt", "lte", "eq", "neq"]),
        st.sampled_from([0, 1, 2, 40, 120, 240]),
    ),
    st.builds(
        lambda measure, op, v: {
            "type": "meddic",
            "measure": measure,
            "op": op,
            "value": v if measure == "score" else v % 7,
        },
        st.sampled_from(["score", "confirmed"]),
        st.sampled_from(["gt", "gte", "lt", "lte", "eq", "neq"]),
        st.sampled_from([0, 1, 2, 3, 4, 50, 58]),
    ),
)
rules = st.recursive(
    conditions,
    lambda children: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"any": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=6,
)

COMPARE = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
}


def evaluate(rule: dict, f: dict) -> bool:
    """The rules, read plainly."""
    if "all" in rule:
        return all(evaluate(r, f) for r in rule["all"])
    if "any" in rule:
        return any(evaluate(r, f) for r in rule["any"])
    if "not" in rule:
        return not evaluate(rule["not"], f)
    kind = rule["type"]
    if kind == "field":
        value = f[rule["field"]]
        return (
            value.lower() == rule["value"].lower() if rule["op"] == "eq" else value in rule["value"]
        )
    if kind == "attribute":
        if rule["key"] == "plan":
            if rule["op"] == "exists":
                return ("plan" in f["attributes"]) == rule["value"]
            return f["attributes"].get("plan") == rule["value"]
        return COMPARE[rule["op"]](float(f["attributes"]["age"]), rule["value"])
    if kind == "tag":
        return (rule["value"] in f["tags"]) == (rule["op"] == "has")
    if kind == "consent":
        return f["consent"] == rule["value"]
    if kind == "event":
        where = rule.get("where", {}).get("category")
        n = sum(
            1
            for name, cat, days in f["events"]
            if name == rule["name"] and days <= rule["days"] and (where is None or cat == where)
        )
        return n >= rule["count"] if rule["op"] == "at_least" else n <= rule["count"]
    if kind == "order":
        value = len(f["orders"]) if rule["measure"] == "count" else sum(f["orders"], Decimal(0))
        return COMPARE[rule["op"]](value, rule["value"])
    if kind == "meddic":
        return COMPARE[rule["op"]](f["meddic"][rule.get("measure", "score")], rule["value"])
    raise AssertionError(kind)


@pytest.mark.django_db
def test_sql_equals_python_for_random_rules():
    facts = build_shop()
    assert {f["stage"] for f in facts.values()} >= {"subscriber", "first_time", "repeat"}

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(rules)
    def check(rule):
        with time_machine.travel(NOW, tick=False):
            q = compile_rules(rule).q
        got = set(Contact.objects.filter(q).values_list("pk", flat=True))
        expected = {pk for pk, f in facts.items() if evaluate(rule, f)}
        assert got == expected, rule

    check()
