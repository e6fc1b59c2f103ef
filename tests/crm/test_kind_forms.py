"""crm.kind_forms.KindWidget: the posted inputs of a kinds form become the config JSON,
typed by the descriptions, for every field type an editor can draw."""

from __future__ import annotations

import json

import pytest
from django.http import QueryDict

from crm.kind_forms import KindWidget, field_shown
from crm.kinds import KINDS, Field, Kind


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setitem(KINDS, "step", {})
    monkeypatch.setitem(KINDS, "condition", {})
    monkeypatch.setattr("crm.kinds.SOURCES", {"segments": lambda: [(3, "Readers")]})
    monkeypatch.setattr("crm.kind_forms.SOURCES", {"segments": lambda: [(3, "Readers")]})
    KINDS["condition"]["segment"] = Kind(
        "segment", "In a segment", fields=(Field("segment", "ref", "Segment", source="segments"),)
    )
    KINDS["step"]["everything"] = Kind(
        "everything",
        "Every field type",
        fields=(
            Field("op", "choice", "Op", choices=(("gt", "more"), ("exists", "set"))),
            Field("value", "number", "Value", when={"op": ("gt",)}),
            Field("value", "boolean", "Set", when={"op": ("exists",)}),
            Field("count", "integer", "Count"),
            Field("wait", "duration", "Wait", prefix="timeout_"),
            Field("segments", "refs", "Segments", source="segments"),
            Field("days", "choices", "Days", choices=((0, "Mon"), (6, "Sun"))),
            Field("where", "properties", "Where"),
            Field("rule", "rule", "Rule"),
            Field("check", "condition", "Check"),
            Field(
                "paths",
                "list",
                "Paths",
                fields=(Field("share", "integer", "Share"), Field("next", "branch", "Then")),
            ),
            Field("note", "text", "Note"),
            Field("plans", "texts", "Plans"),
        ),
    )


def posted(pairs: list[tuple[str, str]]) -> QueryDict:
    data = QueryDict(mutable=True)
    for key, value in pairs:
        data.appendlist(key, value)
    return data


def test_the_inputs_become_typed_json(registry):
    widget = KindWidget("step")
    data = posted(
        [
            ("s.mode", "form"),
            ("s.type", "everything"),
            ("s.op", "gt"),
            ("s.value", "2.5"),
            ("s.count", "4"),
            ("s.wait", "90"),
            ("s.wait.unit", "minutes"),
            ("s.segments", "3"),
            ("s.segments", "7"),
            ("s.days", "6"),
            ("s.where.0.key", "plan"),
            ("s.where.0.value", "gold"),
            ("s.where.1.key", ""),
            ("s.rule", '{"type": "tag", "op": "has", "value": "vip"}'),
            ("s.check.kind", "segment"),
            ("s.check.segment", "3"),
            ("s.paths.0.share", "50"),
            ("s.paths.0.next", "a"),
            ("s.paths.1.share", "50"),
            ("s.note", "  "),
            ("s.plans", "gold\r\n  silver \n\n"),
        ]
    )
    assert json.loads(widget.value_from_datadict(data, {}, "s")) == {
        "type": "everything",
        "op": "gt",
        "value": 2.5,
        "count": 4,
        "timeout_minutes": 90,
        "segments": [3, "7"],  # an unknown id stays as posted, for clean to refuse
        "days": [6],
        "where": {"plan": "gold"},
        "rule": {"type": "tag", "op": "has", "value": "vip"},
        "check": {"kind": "segment", "segment": 3},
        "paths": [{"share": 50, "next": "a"}, {"share": 50}],
        "plans": ["gold", "silver"],  # one a line
    }


def test_a_field_that_does_not_apply_is_left_out(registry):
    data = posted(
        [("s.mode", "form"), ("s.type", "everything"), ("s.op", "exists"), ("s.value", "on")]
    )
    assert json.loads(KindWidget("step").value_from_datadict(data, {}, "s")) == {
        "type": "everything",
        "op": "exists",
        "value": True,
    }
    assert not field_shown(KINDS["step"]["everything"].fields[1], {"op": "exists"})


def test_a_list_without_a_kind_key_and_the_json_mode(registry):
    widget = KindWidget("condition", key="", many=True)
    data = posted([("c.mode", "form"), ("c.0.segment", "3"), ("c.4.segment", "3")])
    assert json.loads(widget.value_from_datadict(data, {}, "c")) == [
        {"segment": 3},
        {"segment": 3},
    ]
    assert json.loads(widget.value_from_datadict(posted([("c.mode", "form")]), {}, "c")) == []
    raw = posted([("c.mode", "json"), ("c", '[{"segment": 1}]'), ("c.0.segment", "3")])
    assert widget.value_from_datadict(raw, {}, "c") == '[{"segment": 1}]'


def test_the_widget_embeds_its_kinds_and_the_condition_kinds_a_field_nests(registry):
    html = KindWidget("step").render("s", '{"type": "everything"}', attrs={"id": "id_s"})
    assert 'data-kind-form data-name="s" data-key="type" data-document="id_s-kinds"' in html
    document = json.loads(html.split('id="id_s-kinds" type="application/json">')[1].split("<")[0])
    assert [k["name"] for k in document["kinds"]] == ["everything"]
    assert [k["name"] for k in document["condition"]] == ["segment"]
    assert document["sources"] == {"segments": [[3, "Readers"]]}
