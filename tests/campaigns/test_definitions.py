"""Bad campaign definitions are refused with a message that says what and where."""

import pytest

from campaigns.models import Campaign
from campaigns.services.definitions import campaign_publish
from campaigns.steps import DefinitionError

pytestmark = pytest.mark.django_db
SEND = {"id": "mail", "type": "send_email", "config": {"template": "welcome"}}


@pytest.mark.parametrize(
    ("changes", "path", "words"),
    [
        ({"steps": []}, "steps", "at least one step"),
        (
            {"steps": [SEND, {"id": "orphan", "type": "wait", "config": {"days": 1}}]},
            "steps[1]",
            "cannot be reached",
        ),
        ({"steps": [{**SEND, "next": "nowhere"}]}, "steps[0].next", "not a step"),
        (
            {"steps": [{"id": "m", "type": "send_email", "config": {}}]},
            "steps[0].config.template",
            "needs a template",
        ),
        (
            {"steps": [{"id": "m", "type": "send_email", "config": {"template": "nope"}}]},
            "steps[0].config.template",
            "no email template",
        ),
        (
            {"steps": [{"id": "w", "type": "wait", "config": {"weeks": 1}}]},
            "steps[0].config",
            "minutes, hours or days",
        ),
        ({"steps": [{"id": "w", "type": "teleport"}]}, "steps[0].type", "Unknown step type"),
        ({"steps": [SEND, {**SEND}]}, "steps[1].id", "used twice"),
        ({"steps": [{**SEND, "yes": "mail"}]}, "steps[0].yes", "branches are next"),
        (
            {"steps": [{"id": "c", "type": "condition", "config": {"kind": "mood"}}]},
            "steps[0].config.kind",
            "Unknown condition kind",
        ),
        (
            {"steps": [{"id": "t", "type": "wait_until", "config": {"time": "25:99"}}]},
            "steps[0].config.time",
            "HH:MM",
        ),
        ({"trigger": {"type": "weather"}}, "trigger.type", "trigger's type"),
        ({"trigger": {"type": "event"}}, "trigger.name", "names the event"),
        ({"trigger": {"type": "date", "field": "shoe_size"}}, "trigger.field", "birthday"),
        ({"goals": [{"match": "cart_id"}]}, "goals[0]", "Order Completed"),
        ({"holdout_percent": 80}, "holdout_percent", "0 to 50"),
    ],
)
def test_bad_definitions_are_refused(templates, changes, path, words):
    campaign = Campaign.objects.create(name="Bad", trigger={"type": "manual"}, steps=[SEND])
    Campaign.objects.filter(pk=campaign.pk).update(**changes)
    campaign.refresh_from_db()
    with pytest.raises(DefinitionError) as error:
        campaign_publish(campaign=campaign)
    assert error.value.path == path
    assert words in error.value.message
    campaign.refresh_from_db()
    assert campaign.status == "draft" and campaign.published_version is None


def test_publishing_the_same_draft_twice_makes_one_version(templates):
    campaign = Campaign.objects.create(name="Same", trigger={"type": "manual"}, steps=[SEND])
    assert campaign_publish(campaign=campaign).number == 1
    assert campaign_publish(campaign=campaign).number == 1
