"""The custom admin views answer to permissions, not to `is_staff` alone (the reported
cases: a staff member with no permission enrolled 155 contacts, previewed any contact's
email with their signed links and sent it outside, read segment members, added to a
static segment, read the dashboard and its CSVs, deliverability and import errors), the
pages that answered 500 to everyone, and the admin history of custom writes. The whole
admin is walked by tests/test_admin_crawl.py; these are the cases, each on its own."""

from __future__ import annotations

import io

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.core import mail

from campaigns.models import Campaign, Enrollment
from campaigns.services.definitions import campaign_publish
from crm.models import ImportJob, Segment
from crm.services.segments import segment_members_add, segment_save
from tests.campaigns.conftest import shopper

pytestmark = pytest.mark.django_db


@pytest.fixture
def clerk(client, django_user_model):
    """Staff with no group and no permission."""
    user = django_user_model.objects.create_user("clerk", "c@example.com", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def live(templates):
    campaign = Campaign.objects.create(
        name="Manual",
        trigger={"type": "manual"},
        steps=[{"id": "hello", "type": "send_email", "config": {"template": "welcome"}}],
    )
    campaign_publish(campaign=campaign)
    people = [shopper(f"s{n}@example.com") for n in range(3)]
    segment = segment_save(name="List", kind="static")
    segment_members_add(segment=segment, contact_ids=[p.pk for p in people])
    return campaign, segment, people


def test_staff_without_permission_cannot_enroll_a_segment(clerk, live):
    campaign, segment, _ = live
    url = f"/admin/campaigns/campaign/{campaign.pk}/enroll-segment/"
    assert clerk.get(url).status_code == 403
    assert clerk.post(url, {"segment": segment.pk}).status_code == 403
    assert not Enrollment.objects.exists()


def test_staff_without_permission_cannot_preview_or_send_a_test(clerk, live, templates):
    _, _, people = live
    url = f"/admin/campaigns/emailtemplate/{templates['welcome'].pk}/preview/"
    assert clerk.get(url, {"contact": people[0].pk}).status_code == 403
    sent = clerk.post(url, {"contact": people[0].pk, "send_test_to": "me@outside.example"})
    assert sent.status_code == 403
    assert not mail.outbox


def test_staff_without_permission_cannot_read_or_fill_segments(clerk, live):
    _, segment, _ = live
    assert clerk.post("/admin/crm/segment/preview/", {"rules": "{}"}).status_code == 403
    upload = io.BytesIO(b"email\nnew@example.com\n")
    upload.name = "members.csv"
    url = f"/admin/crm/segment/{segment.pk}/import-members/"
    assert clerk.post(url, {"file": upload}).status_code == 403
    assert clerk.get(url).status_code == 403


def test_staff_without_permission_cannot_read_the_reports(clerk, django_user_model):
    job = ImportJob.objects.create(
        kind=ImportJob.Kind.CONTACTS,
        file="imports/x.csv",
        errors=[{"row": 2, "field": "email", "message": "nope@"}],
    )
    for url in (
        "/admin/metrics/",
        "/admin/metrics/?csv=retention",
        "/admin/campaigns/message/deliverability/",
        f"/admin/crm/importjob/{job.pk}/errors.csv",
        "/admin/loyalty/ledgerentry/liability.csv",
    ):
        assert clerk.get(url).status_code == 403, url
    assert "Metrics" not in clerk.get("/admin/").content.decode()  # not offered either


def test_the_marketer_role_enrolls_and_the_enrollment_is_in_the_history(
    client, django_user_model, live, django_capture_on_commit_callbacks
):
    campaign, segment, _ = live
    marketer = django_user_model.objects.create_user("mk", "mk@example.com", is_staff=True)
    marketer.groups.add(Group.objects.get(name="marketer"))
    client.force_login(marketer)
    url = f"/admin/campaigns/campaign/{campaign.pk}/enroll-segment/"

    chosen = client.get(url, {"segment": segment.pk})  # the count, before confirming
    assert chosen.status_code == 200
    assert "<strong>3</strong> current members" in chosen.content.decode()
    assert not Enrollment.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, {"segment": segment.pk}).status_code == 302

    assert Enrollment.objects.count() == 3
    entry = LogEntry.objects.get(object_id=str(campaign.pk))
    assert entry.user == marketer
    assert entry.get_change_message() == "Enrolled 3 members of List."


def test_a_permission_for_enroll_alone_does_not_open_the_rest(client, django_user_model, live):
    campaign, _, _ = live
    user = django_user_model.objects.create_user("e", "e@example.com", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_campaign", "enroll_segment"])
    )
    client.force_login(user)
    assert client.get(f"/admin/campaigns/campaign/{campaign.pk}/enroll-segment/").status_code == 200
    assert client.get("/admin/metrics/").status_code == 403


# --- pages that answered 500 to everyone ---------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "/admin/crm/contact/import/",
        "/admin/crm/product/import/",
        "/admin/crm/marketingspend/import/",
    ],
)
def test_the_import_pages_open(staff_client, url):
    page = staff_client.get(url)
    assert page.status_code == 200
    assert 'type="file"' in page.content.decode()


def test_the_segment_members_upload_opens(staff_client):
    segment = segment_save(name="List", kind="static")
    assert staff_client.get(f"/admin/crm/segment/{segment.pk}/import-members/").status_code == 200


def test_the_enroll_page_chooses_a_segment_then_confirms(staff_client, live):
    campaign, segment, _ = live
    url = f"/admin/campaigns/campaign/{campaign.pk}/enroll-segment/"
    first = staff_client.get(url)
    assert first.status_code == 200
    assert 'name="segment"' in first.content.decode()
    confirm = staff_client.get(url, {"segment": segment.pk}).content.decode()
    assert "Confirm and enroll" in confirm
    assert Segment.objects.filter(pk=segment.pk).exists()


# --- custom writes are in the admin history ---------------------------------------------
def test_a_test_send_and_a_refund_are_in_the_history(staff_client, live, templates):
    from crm.models import Order
    from tests.factories import OrderFactory

    _, _, people = live
    template = templates["welcome"]
    staff_client.post(
        f"/admin/campaigns/emailtemplate/{template.pk}/preview/",
        {"contact": people[0].pk, "send_test_to": "me@example.com"},
    )
    order = OrderFactory(contact=people[0])
    staff_client.post(
        "/admin/crm/order/",
        {"action": "refund_in_full", "_selected_action": [order.pk], "post": "yes"},
    )

    said = {
        (e.content_type.model, e.get_change_message())
        for e in LogEntry.objects.select_related("content_type")
    }
    assert ("emailtemplate", f"Sent a test for contact #{people[0].pk} to me@example.com.") in said
    assert any(model == "order" and text.startswith("Refunded") for model, text in said)
    assert Order.objects.get(pk=order.pk).status == "refunded"


def test_the_add_to_segment_action_is_offered_only_with_the_segment_permission(
    client, django_user_model, live
):
    _, segment, people = live
    reader = django_user_model.objects.create_user("r", "r@example.com", is_staff=True)
    reader.groups.add(Group.objects.get(name="analyst"))
    client.force_login(reader)

    assert "add_to_static_segment" not in client.get("/admin/crm/contact/").content.decode()
    client.post(
        "/admin/crm/contact/",
        {
            "action": "add_to_static_segment",
            "_selected_action": [people[0].pk],
            "apply": "1",
            "segment": segment.pk,
        },
    )
    assert not LogEntry.objects.exists()


def test_a_members_file_that_is_not_utf8_is_refused_with_the_reason(staff_client):
    segment = segment_save(name="List", kind="static")
    upload = io.BytesIO("email\né@example.com\n".encode("latin-1"))
    upload.name = "members.csv"
    answer = staff_client.post(
        f"/admin/crm/segment/{segment.pk}/import-members/", {"file": upload}, follow=True
    )
    assert answer.status_code == 200
    assert "not UTF-8" in answer.content.decode()
