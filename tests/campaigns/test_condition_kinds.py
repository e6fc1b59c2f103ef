"""The condition step's kinds on the server: a rule's error names the rule node it is
about (the journey builder shows it on that row), and the contact field's "is one of" /
"is none of" operators are cleaned, described and evaluated in one query."""

from __future__ import annotations

import pytest
from django.utils import translation

from campaigns.models import Enrollment
from campaigns.services.definitions import steps_validate
from campaigns.steps import CONDITION_KINDS, Batch, DefinitionError
from crm import clock
from crm.kinds import KINDS
from crm.services.contacts import contact_create

pytestmark = pytest.mark.django_db

STAGE = {"type": "field", "field": "stage", "op": "in", "value": ["repeat"]}
NEVER = {"type": "event", "name": "Order Completed", "op": "at_least", "count": 0}


def condition(config: dict) -> list[dict]:
    return [{"id": "c", "type": "condition", "config": config, "yes": None, "no": None}]


@pytest.mark.parametrize(
    ("steps", "path"),
    [
        (
            condition({"kind": "rule", "rule": {"all": [STAGE, NEVER]}}),
            "steps[0].config.rule.all[1].count",
        ),
        (condition({"kind": "rule", "rule": {"any": []}}), "steps[0].config.rule.any"),
        (
            [
                {
                    "id": "s",
                    "type": "split",
                    "config": {
                        "paths": [
                            {"name": "A", "condition": {"kind": "rule", "rule": {"not": NEVER}}}
                        ]
                    },
                }
            ],
            "steps[0].config.paths[0].condition.rule.not.count",
        ),
    ],
)
def test_a_rule_s_error_names_the_rule_node_under_the_rule_key(steps, path):
    with pytest.raises(DefinitionError) as error:
        steps_validate(steps)
    assert error.value.path == path


@pytest.mark.parametrize("op", ["in", "not_in"])
def test_the_contact_field_takes_one_of_and_none_of_a_list_of_texts(op):
    config = {"kind": "attribute", "key": "plan", "op": op, "value": ["gold", "silver"]}
    assert steps_validate(condition(config))[0]["config"] == config


@pytest.mark.parametrize("value", ["gold", [], ["gold", 3], ["gold", " "], None])
def test_one_of_without_a_list_of_texts_is_refused_on_the_value(value):
    config = {"kind": "attribute", "key": "plan", "op": "in", "value": value}
    with pytest.raises(DefinitionError) as error:
        steps_validate(condition(config))
    assert error.value.path == "steps[0].config.value"


def test_the_description_offers_one_of_and_none_of_with_a_list_of_texts():
    kind = KINDS["condition"]["attribute"]
    (op,) = [f for f in kind.fields if f.name == "op"]
    assert {"in", "not_in"} <= {value for value, _label in op.choices}
    (values,) = [f for f in kind.fields if f.name == "value" and "in" in f.when["op"]]
    assert values.type == "texts"
    assert values.when == {"op": ("in", "not_in")}
    with translation.override("ja"):
        assert str(dict(op.choices)["in"]) == "次のいずれか"


def test_one_of_and_none_of_are_evaluated_for_a_batch_in_one_query(django_assert_num_queries):
    plans = ["gold", "silver", "bronze", None, "Gold"]
    contacts = [
        contact_create(email=f"c{n}@example.com", attributes={} if plan is None else {"plan": plan})
        for n, plan in enumerate(plans * 20)
    ]
    items = [Enrollment(pk=n + 1, contact_id=c.pk) for n, c in enumerate(contacts)]
    check = CONDITION_KINDS["attribute"][1]
    for op, wanted in [("in", {"gold", "silver"}), ("not_in", {"bronze", None, "Gold"})]:
        config = {"kind": "attribute", "key": "plan", "op": op, "value": ["gold", "silver"]}
        for batch in (items[:1], items):
            with django_assert_num_queries(1):
                results = check(config, batch, Batch(now=clock.now(), enrollments=batch))
            assert results == {
                i.pk: plans[n % len(plans)] in wanted for n, i in enumerate(batch)
            }, op
