"""The condition step's kinds on the server: a rule's error names the rule node it is
about (the journey builder shows it on that row), and the contact field's "is one of" /
"is none of" operators are cleaned, described and evaluated in one query."""

from __future__ import annotations

import pytest

from campaigns.services.definitions import steps_validate
from campaigns.steps import DefinitionError

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
