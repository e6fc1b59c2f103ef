"""Every segment condition says what it takes (crm/kinds.py), so the rule builder can draw
it: a description per registered condition (crm's and loyalty's), whose example compiles,
whose fields' `when`s name fields of the kind, and whose sources are registered."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from crm.kinds import KINDS, SOURCES, kinds_document, kinds_missing
from crm.rules import CONDITIONS, compile_rules
from loyalty.models import Tier

pytestmark = pytest.mark.django_db


def test_every_registered_segment_condition_is_described():
    assert kinds_missing("segment_condition", CONDITIONS) == []
    assert {"tier", "loyalty_balance", "credit_expiring", "referral_count"} <= set(CONDITIONS)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_each_description_is_whole_and_its_example_compiles(name):
    Tier.objects.create(name="Gold", rank=1, threshold=Decimal("10"))
    kind = KINDS["segment_condition"][name]
    example = kind.extra["example"]
    assert example["type"] == name
    compile_rules(example)  # raises RuleError if the example is not a rule
    names = {f.name for f in kind.fields}
    assert set(example) - {"type"} <= names, "the example uses a key the form cannot show"
    for f in kind.fields:
        for key in f.when or {}:
            assert key in names, f"{name}.{f.name} is shown by an unknown field {key!r}"
        if f.source:
            assert f.source in SOURCES, f"{name}.{f.name}: source {f.source!r} not registered"


def test_the_document_carries_the_conditions_and_their_options_in_japanese():
    Tier.objects.create(name="Gold", rank=1, threshold=Decimal("10"))
    document = kinds_document("ja", registries=["segment_condition"])
    kinds = {k["name"]: k for k in document["segment_condition"]}
    assert set(kinds) == set(CONDITIONS)
    assert kinds["tier"]["label"] == "ロイヤルティ階層"
    assert document["sources"]["tiers"] == [["Gold", "Gold"]]
    assert ["loyal", "ロイヤル顧客"] in document["sources"]["stages"]
    english = kinds_document("en", registries=["segment_condition"])
    assert {k["name"]: k["label"] for k in english["segment_condition"]}["tier"] == "Loyalty tier"


def test_every_list_of_texts_the_builder_offers_compiles():
    """Where a description shows a list of texts ("is one of" on a text field or an
    attribute), the node the builder makes from it compiles, for each value of its `when`."""
    shown = []
    for kind in KINDS["segment_condition"].values():
        for f in kind.fields:
            if f.type != "texts":
                continue
            keys = list(f.when or {})
            for values in itertools.product(*(f.when[k] for k in keys)):
                node = {
                    **kind.extra["example"],
                    **dict(zip(keys, values, strict=True)),
                    f.name: ["a", "B"],
                }
                compile_rules(node)
                shown.append((kind.name, node.get("field"), node["op"]))
    assert ("attribute", None, "in") in shown and ("attribute", None, "not_in") in shown
    assert ("field", "email", "in") in shown and ("field", "channel", "not_in") in shown


def test_the_choices_the_builder_offers_are_in_japanese_too(db):
    """Stages, RFM groups and referral statuses are model choices: translated as well."""
    from django.utils import translation

    from crm.kind_sources import stages
    from crm.models import RfmGroup
    from loyalty.models import Referral

    with translation.override("ja"):
        assert dict(stages())["first_time"] == "初回購入客"
        assert str(RfmGroup.CANT_LOSE.label) == "失いたくない顧客"
        assert str(Referral.Status.REWARDED.label) == "特典付与済み"
    assert dict(stages())["first_time"] == "First-time customer"
