"""Campaign admin: validation messages, the diagram with counts, template preview and
test send, publish/pause/resume, enrolling a segment, subject length warnings."""

import json

import pytest
from django.core import mail
from django.utils import translation

from campaigns.admin import JOURNEY_STRINGS, journey_context
from campaigns.models import Campaign, Enrollment
from campaigns.services.definitions import campaign_publish
from crm.services.segments import segment_members_add, segment_save
from tests.campaigns.conftest import shopper, template_form

pytestmark = pytest.mark.django_db


def form(**overrides):
    data = {
        "name": "Admin-made",
        "description": "",
        "trigger": json.dumps({"type": "manual"}),
        "reentry": "once",
        "reentry_days": "30",
        "goals": "[]",
        "attribution_days": "5",
        "holdout_percent": "0",
        "priority": "10",
        "max_delay_hours": "48",
        "steps": json.dumps(
            [{"id": "hello", "type": "send_email", "config": {"template": "welcome"}}]
        ),
    }
    data.update(overrides)
    return data


def test_a_campaign_with_an_unreachable_step_is_refused_with_the_reason(staff_client, templates):
    steps = [
        {"id": "hello", "type": "send_email", "config": {"template": "welcome"}},
        {"id": "lost", "type": "wait", "config": {"days": 1}},
    ]
    response = staff_client.post("/admin/campaigns/campaign/add/", form(steps=json.dumps(steps)))
    assert response.status_code == 200
    assert "cannot be reached from the first step" in response.content.decode()
    assert not Campaign.objects.exists()


def test_campaign_page_embeds_the_journey_builder_and_shows_results(
    staff_client, abandoned_cart, run
):
    response = staff_client.get(f"/admin/campaigns/campaign/{abandoned_cart.pk}/change/")
    page = response.content.decode()
    kinds = json.loads(
        page.split('id="kp-kinds" type="application/json">')[1].split("</script>")[0]
    )
    assert {"wait", "send_email", "random_split", "grant"} <= {k["name"] for k in kinds["step"]}
    assert ["cart-1", "cart-1 — You left something behind, {{ first_name }}"] in kinds["sources"][
        "templates"
    ]
    data = response.context["journey"]["data"]
    assert data["version"] == 1
    assert data["counts_url"] == f"/admin/campaigns/campaign/{abandoned_cart.pk}/journey/counts/"
    assert "journey_builder.js" in page
    assert "Treatment" in page and "Holdout" in page


def test_the_builder_checks_steps_with_the_save_s_validation(staff_client, templates):
    url = "/admin/campaigns/campaign/journey/validate/"
    steps = [
        {"id": "w", "type": "wait", "config": {"hours": 1}, "next": "s"},
        {"id": "s", "type": "send_email", "config": {"template": "welcome"}},
    ]
    answer = staff_client.post(url, {"steps": steps}, content_type="application/json").json()
    assert answer == {"ok": True}
    steps[0]["config"] = {"hours": -1}
    answer = staff_client.post(url, {"steps": steps}, content_type="application/json").json()
    assert answer == {
        "ok": False,
        "path": "steps[0].config.hours",
        "message": "'hours' must be a number from 0 to 1e+06.",
    }
    steps[0]["config"] = {"hours": 1}
    steps[1]["config"] = {"template": "nope"}
    answer = staff_client.post(url, {"steps": steps}, content_type="application/json").json()
    assert answer["path"] == "steps[1].config.template"
    assert staff_client.get(url).status_code == 405


def test_publish_pause_resume_actions(staff_client, templates):
    staff_client.post("/admin/campaigns/campaign/add/", form())
    campaign = Campaign.objects.get()
    assert campaign.status == "draft"
    for action, status in (("publish", "active"), ("pause", "paused"), ("resume", "active")):
        staff_client.post(
            "/admin/campaigns/campaign/", {"action": action, "_selected_action": [campaign.pk]}
        )
        campaign.refresh_from_db()
        assert campaign.status == status


def test_enroll_a_segment_from_the_admin(
    staff_client, templates, django_capture_on_commit_callbacks
):
    campaign = Campaign.objects.create(
        name="Manual",
        trigger={"type": "manual"},
        steps=[{"id": "hello", "type": "send_email", "config": {"template": "welcome"}}],
    )
    campaign_publish(campaign=campaign)
    people = [shopper(f"s{n}@example.com") for n in range(3)]
    segment = segment_save(name="List", kind="static")
    segment_members_add(segment=segment, contact_ids=[p.pk for p in people])
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            f"/admin/campaigns/campaign/{campaign.pk}/enroll-segment/", {"segment": segment.pk}
        )
    assert response.status_code == 302
    assert Enrollment.objects.count() == 3
    assert len(mail.outbox) == 3


def test_template_preview_for_a_contact_and_a_test_send(staff_client, templates):
    contact = shopper("preview@example.com", first_name="Pia")
    template = templates["cart-1"]
    page = staff_client.get(
        f"/admin/campaigns/emailtemplate/{template.pk}/preview/", {"contact": contact.pk}
    )
    assert "You left something behind, Pia" in page.content.decode()
    staff_client.post(
        f"/admin/campaigns/emailtemplate/{template.pk}/preview/",
        {"contact": contact.pk, "send_test_to": "staff@example.com"},
    )
    assert mail.outbox[-1].to == ["staff@example.com"]
    assert mail.outbox[-1].subject.startswith("[TEST] ")


def test_long_subjects_are_flagged(staff_client, templates):
    response = staff_client.post(
        "/admin/campaigns/emailtemplate/add/",
        template_form(name="long", subject="This subject line is far too long for phones"),
        follow=True,
    )
    assert "mobile mail clients show only the first 25–30" in response.content.decode()
    listing = staff_client.get("/admin/campaigns/emailtemplate/").content.decode()
    assert "⚠" in listing


def test_a_template_syntax_error_is_refused(staff_client):
    response = staff_client.post(
        "/admin/campaigns/emailtemplate/add/",
        template_form(name="broken", subject="Hi", html_body="{% if %}"),
    )
    assert response.status_code == 200 and "Template error" in response.content.decode()


@pytest.mark.parametrize("page", ["campaign", "emailtemplate", "enrollment", "message"])
def test_lists_render(staff_client, abandoned_cart, page):
    assert staff_client.get(f"/admin/campaigns/{page}/").status_code == 200


def test_the_builder_speaks_the_staff_s_language():
    with translation.override("ja"):
        journey = journey_context(None)
    strings = journey["data"]["strings"]
    assert set(strings) == set(JOURNEY_STRINGS)
    assert strings["Add the first step"] == "最初のステップを追加"
    assert all(strings[text] != text for text in JOURNEY_STRINGS), "a string without Japanese"
    assert {k["name"]: k["label"] for k in journey["kinds"]["step"]}["send_email"] == "メールを送る"
