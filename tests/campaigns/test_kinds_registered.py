"""Every condition kind, trigger type and goal has a description (crm.kinds), in every app
that registers one, and a config made of its defaults (or a source's first option) is one
the kind's own clean accepts: the editor's starting point is always a valid definition."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.services.definitions import (
    TRIGGERS,
    goals_validate,
    steps_validate,
    trigger_validate,
)
from campaigns.steps import CONDITION_KINDS
from crm import clock
from crm.kind_forms import field_shown
from crm.kinds import KINDS, SOURCES, Kind, kinds_document, kinds_missing
from crm.models import Segment, Topic
from loyalty.models import Tier
from tests.factories import ContactFactory, EventFactory

pytestmark = pytest.mark.django_db


def example(kind: Kind) -> dict:
    """The config an editor starts from: each shown field's default, or for a required
    reference the first option of its source."""
    config: dict = {}
    for field in kind.fields:
        if not field_shown(field, config):
            continue
        value = field.default
        if value is None and field.required and field.source:
            value = SOURCES[field.source]()[0][0]
        assert value is not None or not field.required, f"{kind.name}.{field.name}: no example"
        if value is not None:
            config[field.name] = value
    return config


@pytest.fixture(autouse=True)
def things_to_refer_to(db):
    Segment.objects.create(name="Newsletter readers")
    Topic.objects.create(slug="news", name="News")
    Tier.objects.create(name="Rouge", rank=1, threshold=100)


def test_every_condition_kind_trigger_type_and_goal_is_described():
    assert kinds_missing("condition", CONDITION_KINDS) == []
    assert kinds_missing("trigger", TRIGGERS) == []
    assert list(KINDS["goal"]) == ["event"]
    assert {"tier", "loyalty_balance", "points_expiring", "tier_changed"} <= (
        set(KINDS["condition"]) | set(KINDS["trigger"])
    )


@pytest.mark.parametrize("name", sorted(CONDITION_KINDS))
def test_a_condition_made_of_its_description_is_valid(name):
    config = {"kind": name, **example(KINDS["condition"][name])}
    steps_validate([{"id": "check", "type": "condition", "config": config}])


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_a_trigger_made_of_its_description_is_valid(name):
    trigger_validate({"type": name, **example(KINDS["trigger"][name])})


def test_a_goal_made_of_its_description_is_valid():
    goals_validate([example(KINDS["goal"]["event"])])


def test_the_document_is_translated_and_carries_the_sources():
    document = kinds_document("ja", registries=["trigger", "goal"])
    labels = {kind["name"]: kind["label"] for kind in document["trigger"]}
    assert labels["event"] == "イベントが起きたとき"
    assert labels["tier_changed"] == "会員ランクが変わったとき"  # loyalty's catalog
    assert document["sources"]["segments"] == [[Segment.objects.get().pk, "Newsletter readers"]]
    assert document["sources"]["tiers"] == [["Rouge", "Rouge"]]


def test_the_events_source_offers_recent_event_names(db):
    now = clock.now()
    contact = ContactFactory()
    for name, days in (("Order Completed", 1), ("Order Completed", 2), ("Old Thing", 400)):
        EventFactory(contact=contact, name=name, occurred_at=now - dt.timedelta(days=days))
    assert SOURCES["events"]() == [("Order Completed", "Order Completed")]
