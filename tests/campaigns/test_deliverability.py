"""The deliverability view per day, with the complaint rate flagged above 0.1%."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Message
from campaigns.selectors import deliverability_by_day
from tests.campaigns.conftest import shopper

pytestmark = pytest.mark.django_db


def test_rates_per_day_and_the_complaint_alarm(staff_client):
    contact = shopper("d@example.com")
    now = timezone.now()
    for n in range(1000):
        Message.objects.create(
            contact=contact,
            category="marketing",
            idempotency_key=f"d{n}",
            to_email=contact.email,
            status="sent",
            created_at=now,
            sent_at=now,
            delivered_at=now if n < 990 else None,
            bounced_at=now if n >= 990 else None,
            complained_at=now if n < 2 else None,
            unsubscribed_at=now if n < 5 else None,
        )
    Message.objects.create(
        contact=contact,
        category="marketing",
        idempotency_key="old",
        to_email=contact.email,
        status="sent",
        created_at=now - timedelta(days=2),
        sent_at=now - timedelta(days=2),
        delivered_at=now - timedelta(days=2),
    )
    today, earlier = deliverability_by_day(days=30)
    assert (today["sent"], today["delivered_rate"], today["bounced_rate"]) == (1000, 99.0, 1.0)
    assert (today["complained_rate"], today["complaint_alarm"]) == (0.2, True)
    assert earlier["complaint_alarm"] is False
    page = staff_client.get("/admin/campaigns/message/deliverability/").content.decode()
    assert "⚠ 2 (0.2%)" in page


def test_empty_state(staff_client):
    page = staff_client.get("/admin/campaigns/message/deliverability/").content.decode()
    assert "Nothing was sent in the last 30 days." in page


def test_staff_lift_a_suppression_with_a_note_and_the_reason_is_kept(staff_client):
    from campaigns.models import Suppression
    from campaigns.services.delivery import suppression_create

    suppression, _ = suppression_create(
        email="Bounced@Example.com", reason="hard_bounce", source="postmark webhook"
    )
    listing = staff_client.get("/admin/campaigns/suppression/", {"active": "yes"}).content.decode()
    assert "bounced@example.com" in listing
    form = staff_client.post(
        "/admin/campaigns/suppression/", {"action": "lift", "_selected_action": [suppression.pk]}
    )
    assert "Why this address may receive mail again" in form.content.decode()
    staff_client.post(
        "/admin/campaigns/suppression/",
        {
            "action": "lift",
            "_selected_action": [suppression.pk],
            "apply": "1",
            "note": "mailbox fixed, customer called",
        },
    )
    suppression.refresh_from_db()
    assert suppression.lifted_at and suppression.lifted_by.username == "staff"
    assert (suppression.reason, suppression.lift_note) == (
        "hard_bounce",
        "mailbox fixed, customer called",
    )
    assert Suppression.objects.count() == 1
    assert staff_client.get("/admin/campaigns/deliveryevent/").status_code == 200
