"""crm.kinds: the descriptions the admin's editors are generated from."""

from __future__ import annotations

import pytest
from django.utils.translation import gettext_lazy as _

from crm.kinds import KINDS, Field, Kind, KindError, kind_describe, kinds_document, kinds_missing


@pytest.fixture
def scratch(monkeypatch):
    monkeypatch.setitem(KINDS, "step", {})
    monkeypatch.setattr("crm.kinds.SOURCES", {"templates": lambda: [(1, "Welcome")]})


def test_a_description_becomes_the_document_an_editor_reads(scratch):
    kind_describe(
        "step",
        Kind(
            "wait",
            _("Wait"),
            fields=(Field("hours", "number", _("Hours"), minimum=0, required=True),),
            branches=(("next", _("Then")),),
        ),
    )
    kind_describe(
        "step",
        Kind(
            "send_email", "Send", fields=(Field("template", "ref", "Template", source="templates"),)
        ),
    )
    document = kinds_document("en", registries=["step"])
    assert document["step"][0] == {
        "name": "wait",
        "label": "Wait",
        "fields": [
            {"name": "hours", "type": "number", "label": "Hours", "required": True, "minimum": 0}
        ],
        "branches": [["next", "Then"]],
    }
    assert document["sources"] == {"templates": [[1, "Welcome"]]}
    assert kinds_missing("step", ["wait", "send_email", "exit"]) == ["exit"]


def test_a_description_that_cannot_be_right_is_refused():
    with pytest.raises(KindError):
        Field("x", "colour", "X")
    with pytest.raises(KindError):
        Field("template", "ref", "Template")  # no source
    with pytest.raises(KindError):
        Field("op", "choice", "Operator")  # no choices
    with pytest.raises(KindError):
        Field("paths", "list", "Paths")  # no item fields
    with pytest.raises(KindError):
        kind_describe("widgets", Kind("x", "X"))


def test_a_list_describes_its_items():
    paths = Field(
        "paths",
        "list",
        "Paths",
        fields=(Field("name", "text", "Name"), Field("next", "branch", "Then")),
    )
    assert paths.describe()["fields"][1] == {"name": "next", "type": "branch", "label": "Then"}


def test_the_document_carries_the_sources_of_a_lists_items(scratch):
    item = Field("template", "ref", "Template", source="templates")
    kind_describe(
        "step", Kind("many", "Many", fields=(Field("paths", "list", "Paths", fields=(item,)),))
    )
    assert kinds_document("en", registries=["step"])["sources"] == {"templates": [[1, "Welcome"]]}


def test_a_list_of_texts_is_a_field_type_and_may_suggest_a_source(scratch):
    kind_describe(
        "step",
        Kind("plans", "Plans", fields=(Field("value", "texts", "Plans", source="templates"),)),
    )
    document = kinds_document("en", registries=["step"])
    assert document["step"][0]["fields"] == [
        {"name": "value", "type": "texts", "label": "Plans", "source": "templates"}
    ]
    assert document["sources"] == {"templates": [[1, "Welcome"]]}
    with pytest.raises(KindError):
        Field("value", "textlist", "Plans")
