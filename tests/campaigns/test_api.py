"""Campaigns API (stats, idempotent enrollment, a contact's enrollments and messages) and
the one-click unsubscribe link."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from rest_framework.test import APIClient

from campaigns.models import Campaign, Enrollment, Message
from campaigns.services.definitions import campaign_publish
from crm.links import unsubscribe_token
from crm.models import ConsentRecord
from tests.campaigns.conftest import T0, shopper

pytestmark = pytest.mark.django_db


@pytest.fixture
def manual(templates):
    campaign = Campaign.objects.create(
        name="Manual",
        trigger={"type": "manual"},
        steps=[{"id": "hello", "type": "send_email", "config": {"template": "welcome"}}],
    )
    campaign_publish(campaign=campaign)
    return campaign


def test_enroll_is_idempotent_with_a_key(api, manual, django_capture_on_commit_callbacks):
    contact = shopper("api@example.com")
    url = f"/api/v1/campaigns/{manual.pk}/enroll/"
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(
            url, {"email": "API@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
        )
    assert first.status_code == 201, first.json()
    with django_capture_on_commit_callbacks(execute=True):
        again = api.post(
            url, {"email": "API@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
        )
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert Enrollment.objects.count() == 1
    assert len(mail.outbox) == 1
    other_body = api.post(url, {"contact_id": contact.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert other_body.status_code == 422
    assert other_body.json()["code"] == "idempotency_key_reused"
    # the default policy is once per contact: a new key is refused with a reason
    refused = api.post(url, {"contact_id": contact.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert refused.status_code == 409 and refused.json()["code"] == "not_eligible"


def test_enroll_errors(api, manual):
    url = f"/api/v1/campaigns/{manual.pk}/enroll/"
    assert api.post(url, {}, format="json").json()["details"]["field"] == "contact_id"
    assert api.post(url, {"email": "nobody@example.com"}, format="json").status_code == 404
    assert api.post(url, {"colour": "red"}, format="json").json()["code"] == "unknown_field"
    Campaign.objects.filter(pk=manual.pk).update(status="paused")
    shopper("p@example.com")
    assert api.post(url, {"email": "p@example.com"}, format="json").status_code == 409


def test_a_contacts_enrollments_messages_and_campaign_stats(
    api, read_api, manual, django_capture_on_commit_callbacks
):
    contact = shopper("hist@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        api.post(
            f"/api/v1/campaigns/{manual.pk}/enroll/", {"contact_id": contact.pk}, format="json"
        )
    enrollments = read_api.get("/api/v1/enrollments/", {"contact": contact.pk}).json()["results"]
    assert enrollments[0]["status"] == "completed" and enrollments[0]["version"] == 1
    assert [h["step_id"] for h in enrollments[0]["history"]] == ["hello"]
    messages = read_api.get("/api/v1/messages/", {"contact": contact.pk}).json()["results"]
    assert messages[0]["status"] == "sent" and messages[0]["subject"] == "Welcome!"
    stats = read_api.get(f"/api/v1/campaigns/{manual.pk}/stats/").json()
    assert stats["treatment"]["enrolled"] == 1 and stats["messages"]["sent"] == 1
    assert stats["steps"]["hello"]["sent"] == 1
    assert read_api.get("/api/v1/campaigns/").json()["results"][0]["version"] == 1


def test_one_click_unsubscribe_without_cookies(templates, run):
    contact = shopper("click@example.com")
    token = unsubscribe_token(contact.pk)
    client = APIClient(enforce_csrf_checks=True)
    response = client.post(
        f"/u/{token}/",
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert not response.cookies
    latest = ConsentRecord.objects.filter(contact=contact).order_by("-recorded_at", "-id").first()
    assert (latest.status, latest.source) == ("withdrawn", "one-click unsubscribe")
    # and the next marketing step sends nothing
    campaign = Campaign.objects.create(
        name="After",
        trigger={"type": "event", "name": "Go"},
        steps=[{"id": "m", "type": "send_email", "config": {"template": "welcome"}}],
    )
    campaign_publish(campaign=campaign)
    from tests.campaigns.conftest import track

    with time_machine.travel(T0, tick=False) as clock:
        track("click@example.com", "Go", T0, "go")
        clock.shift(timedelta(seconds=10))
        run()
    assert mail.outbox == []
    assert Message.objects.get().status == "skipped"


def test_a_get_never_unsubscribes_and_a_bad_link_is_friendly(client):
    contact = shopper("get@example.com")
    page = client.get(f"/u/{unsubscribe_token(contact.pk)}/")
    assert page.status_code == 200 and b"Unsubscribe" in page.content
    assert ConsentRecord.objects.filter(contact=contact).count() == 1
    bad = client.get("/u/not-a-token/")
    assert bad.status_code == 404 and b"does not work" in bad.content
