"""The campaign form without JSON: trigger, goals and exits are posted as the fields the
kinds form (crm/static/crm/kind_form.js) draws from the descriptions, and the server
assembles the definition from them; an invalid value comes back on its field."""

from __future__ import annotations

import json

import pytest

from campaigns.models import Campaign, EmailTemplate
from campaigns.services.definitions import TRIGGERS
from crm.models import Segment, Topic
from crm.services.products import PRICE_DROPPED
from loyalty.models import Tier
from tests.campaigns.conftest import template_form

pytestmark = pytest.mark.django_db

ADD = "/admin/campaigns/campaign/add/"


@pytest.fixture
def things(templates):
    return {
        "segment": Segment.objects.create(name="Newsletter readers"),
        "topic": Topic.objects.create(slug="news", name="News"),
        "tier": Tier.objects.create(name="Rouge", rank=1, threshold=100),
    }


def posted(**fields) -> dict:
    """What the browser sends for a campaign whose trigger, goal, exit, entry rules and caps
    were chosen in the forms: no JSON typed (the steps come from the steps editor)."""
    data = {
        "name": "Made in the form",
        "description": "",
        "trigger.mode": "form",
        "trigger": "",
        "reentry": "once",
        "reentry_days": "30",
        "goals.mode": "form",
        "goals": "",
        "exits.mode": "form",
        "exits": "",
        "attribution_days": "5",
        "holdout_percent": "0",
        "priority": "10",
        "max_delay_hours": "48",
        "steps": json.dumps(
            [{"id": "hello", "type": "send_email", "config": {"template": "welcome"}}]
        ),
    }
    data.update(fields)
    return data


# One case per trigger type (the test below fails for a type without one): the inputs the
# form posts, and the trigger they make.
TRIGGER_CASES = {
    "event": (
        {
            "trigger.name": "Checkout Started",
            "trigger.where.0.key": "category",
            "trigger.where.0.value": "shoes",
            "trigger.include_backfill": "on",
        },
        {"name": "Checkout Started", "where": {"category": "shoes"}, "include_backfill": True},
    ),
    "segment_entered": ({"trigger.segment": "{segment}"}, {"segment": "{segment}"}),
    "segment_exited": ({"trigger.segment": "{segment}"}, {"segment": "{segment}"}),
    "stage_changed": ({"trigger.from": "", "trigger.to": "lapsed"}, {"to": "lapsed"}),
    "subscribed": ({"trigger.topic": "news"}, {"topic": "news"}),
    "date": (
        {"trigger.field": "birthday", "trigger.offset_days": "-7"},
        {"field": "birthday", "offset_days": -7},
    ),
    "product_event": (
        {"trigger.event": PRICE_DROPPED, "trigger.audience": "interested", "trigger.days": "14"},
        {"event": PRICE_DROPPED, "audience": "interested", "days": 14},
    ),
    "manual": ({}, {}),
    "credit_expiring": ({"trigger.days": "7"}, {"days": 7}),
    "points_expiring": ({"trigger.days": "30"}, {"days": 30}),
    "tier_changed": (
        {"trigger.from": "", "trigger.to": "Rouge", "trigger.direction": "up"},
        {"to": "Rouge", "direction": "up"},
    ),
}


def test_every_trigger_type_has_a_form_case():
    assert set(TRIGGER_CASES) == set(TRIGGERS)


@pytest.mark.parametrize("kind", sorted(TRIGGER_CASES))
def test_a_campaign_is_made_in_the_form_with_each_trigger_type(staff_client, things, kind):
    segment = things["segment"].pk
    inputs, expected = TRIGGER_CASES[kind]
    inputs = {k: v.replace("{segment}", str(segment)) for k, v in inputs.items()}
    expected = {k: segment if v == "{segment}" else v for k, v in expected.items()}

    response = staff_client.post(
        ADD,
        posted(
            **{"trigger.type": kind, **inputs},
            **{"goals.0.event": "Order Completed", "goals.0.match": "cart"},
            **{"exits.0.type": "stage_changed", "exits.0.from": "", "exits.0.to": "lapsed"},
            entry_segment=str(segment),
            reentry="once_per_n_days",
            reentry_days="14",
            priority="0",
            topic=str(things["topic"].pk),
            cap_24h="1",
            cap_7d="3",
            max_delay_hours="12",
        ),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    campaign = Campaign.objects.get()
    assert campaign.trigger == {"type": kind, **expected}
    assert campaign.goals == [{"event": "Order Completed", "match": "cart"}]
    assert campaign.exits == [{"type": "stage_changed", "to": "lapsed"}]
    assert campaign.entry_segment == things["segment"]
    assert (campaign.reentry, campaign.reentry_days) == ("once_per_n_days", 14)
    assert (campaign.priority, campaign.topic, campaign.max_delay_hours) == (
        0,
        things["topic"],
        12,
    )
    assert (campaign.cap_24h, campaign.cap_7d) == (1, 3)


def test_goals_and_exits_may_be_several_or_none(staff_client, things):
    response = staff_client.post(
        ADD,
        posted(
            **{"trigger.type": "manual"},
            **{"goals.0.event": "Order Completed", "goals.2.event": "Subscription Started"},
            **{"goals.2.where.0.key": "plan", "goals.2.where.0.value": "yearly"},
        ),
    )
    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert campaign.goals == [
        {"event": "Order Completed"},
        {"event": "Subscription Started", "where": {"plan": "yearly"}},
    ]
    assert campaign.exits == []


def test_a_bad_value_is_reported_on_its_field(staff_client, things):
    response = staff_client.post(
        ADD, posted(**{"trigger.type": "segment_entered", "trigger.segment": "999"})
    )
    page = response.content.decode()
    assert response.status_code == 200 and not Campaign.objects.exists()
    assert "is the id of an existing segment" in page
    assert 'data-error-path="trigger.segment"' in page
    # what was chosen is shown again, as posted
    assert "&quot;segment_entered&quot;" in page

    response = staff_client.post(ADD, posted(**{"trigger.type": "manual", "goals.0.match": "cart"}))
    assert 'data-error-path="goals[0]"' in response.content.decode()


def test_the_json_stays_available(staff_client, things):
    trigger = {"type": "stage_changed", "to": "lapsed"}
    response = staff_client.post(
        ADD,
        posted(
            **{"trigger.mode": "json", "trigger.type": "manual"},
            trigger=json.dumps(trigger),
        ),
    )
    assert response.status_code == 302
    assert Campaign.objects.get().trigger == trigger


def test_the_form_carries_the_descriptions_and_their_options(staff_client, things):
    page = staff_client.get(ADD).content.decode()
    assert page.count("data-kind-form") == 3  # trigger, exits, goals
    assert "crm/kind_form.js" in page
    assert "Newsletter readers" in page  # the segments' options, in the document


def test_a_templates_topic_and_kind_are_chosen_in_its_form(staff_client, things):
    response = staff_client.post(
        "/admin/campaigns/emailtemplate/add/",
        template_form(name="news-1", topic=str(things["topic"].pk), subject="March news"),
    )
    assert response.status_code == 302
    template = EmailTemplate.objects.get(name="news-1")
    assert (template.category, template.topic) == ("marketing", things["topic"])


def test_the_form_speaks_japanese(staff_client, things):
    page = staff_client.get(ADD, HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "開始のきっかけ" in page  # the trigger field's label
    assert "セグメントに入ったとき" in page  # a trigger kind, in the embedded document
    assert "JSON で編集（上級者向け）" in page
