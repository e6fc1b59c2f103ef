"""Every step type says what it takes (crm.kinds), and what it says is what its `clean`
accepts: a config built the way the journey builder builds a new step (the description's
defaults, the first option of a required reference, or the kind's example) is valid."""

from __future__ import annotations

import pytest
from django.utils import translation

from campaigns.models import EmailTemplate
from campaigns.services.definitions import steps_validate
from campaigns.steps import REGISTRY
from crm.kinds import KINDS, SOURCES, Field, Kind, kinds_document, kinds_missing

pytestmark = pytest.mark.django_db


def shown(field: Field, values: dict) -> bool:
    return all(values.get(key) in allowed for key, allowed in (field.when or {}).items())


def from_defaults(fields: tuple[Field, ...], flat: str = "") -> dict:
    """What journey_builder.js's `defaults` does, in Python."""
    config: dict = {}
    for field in fields:
        if not shown(field, config):
            continue
        value = field.default
        if value is None and field.required and field.type == "ref":
            options = SOURCES[field.source]()
            value = options[0][0] if options else None
        if value is None:
            continue
        if field.type == "duration":
            config.update({f"{field.prefix}{unit}": n for unit, n in value.items()})
        elif field.name == flat:
            config.update(value)
        else:
            config[field.name] = value
    return config


def new_config(kind: Kind) -> dict:
    return kind.extra.get("example") or from_defaults(kind.fields, kind.extra.get("flat", ""))


def test_every_registered_step_type_has_a_description():
    assert kinds_missing("step", REGISTRY) == []
    assert "grant" in KINDS["step"]  # loyalty's, registered through campaigns.extend


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_new_step_from_its_description_is_accepted_by_its_clean(name):
    EmailTemplate.objects.create(name="cart reminder", subject="Your cart", html_body="<p>Hi</p>")
    kind = KINDS["step"][name]
    config = new_config(kind)
    step = {"id": "only", "type": name, "config": config}
    assert REGISTRY[name].clean(config, "steps[0].config") == config
    steps_validate([step])  # the save's whole check: keys, branches and all


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_each_described_field_is_a_key_the_type_takes(name):
    kind, step = KINDS["step"][name], REGISTRY[name]
    config = new_config(kind)
    keys = step.keys_for(config)
    if keys is None:
        return
    for field in kind.fields:
        if field.type == "condition" and kind.extra.get("flat") == field.name:
            continue
        names = (
            {f"{field.prefix}{unit}" for unit in ("minutes", "hours", "days")}
            if field.type == "duration"
            else {field.name}
        )
        assert names <= keys, f"{name}.{field.name} is not a key {name} takes"
    assert {key for key, _ in kind.branches} == set(step.branches)


def test_the_document_is_in_japanese_with_the_sources_options():
    EmailTemplate.objects.create(name="cart reminder", subject="Your cart", html_body="<p>Hi</p>")
    document = kinds_document("ja", registries=["step"])
    labels = {kind["name"]: kind["label"] for kind in document["step"]}
    assert labels["wait"] == "待つ"
    assert labels["grant"] == "特典を贈る"
    assert document["sources"]["templates"] == [["cart reminder", "cart reminder — Your cart"]]
    with translation.override("en"):
        assert kinds_document(registries=["step"])["step"][0]["label"] == "Wait"
