"""Crashes are visible and healed: a chunk whose outcome was never recorded becomes
"unconfirmed" after the timeout, the ESP's tracking events confirm what it had, staff resend
the rest deliberately, and a broadcast is never "sent" while any remain. Lost webhook
retries are handed out again. Message bodies are purged after the retention period."""

import datetime as dt
import json
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.core import mail

from campaigns.models import Broadcast, EmailTemplate, Message, WebhookDelivery
from campaigns.services import sending
from campaigns.services.broadcasts import broadcast_schedule, broadcast_stats, broadcasts_tick
from campaigns.services.recovery import (
    message_bodies_purge,
    messages_unconfirmed_sweep,
    webhooks_lost_sweep,
)
from campaigns.services.webhooks import webhook_deliver
from tests.campaigns.test_broadcasts import audience
from tests.campaigns.test_delivery import mailgun_sign

pytestmark = pytest.mark.django_db

UTC = dt.UTC
DAY = dt.date(2026, 3, 10)
START = dt.datetime(2026, 3, 10, 9, tzinfo=UTC)  # 09:00 shop time (UTC)
MAILGUN_KEY = "test-mailgun-webhook-signing-key"


@pytest.fixture(autouse=True)
def shop_in_utc(settings):
    settings.KEEPERS_SHOP_TIME_ZONE = "UTC"
    settings.KEEPERS_SENDING_TIMEOUT_SECONDS = 600
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}


@pytest.fixture
def tick(django_capture_on_commit_callbacks):
    def run(at: dt.datetime) -> dict:
        with (
            time_machine.travel(at, tick=False),
            django_capture_on_commit_callbacks(execute=True),
        ):
            return broadcasts_tick()

    return run


@pytest.fixture
def broadcast(db):
    template = EmailTemplate.objects.create(
        name="news", subject="News", html_body="<p>Hello {{ first_name }}</p>"
    )
    made = Broadcast.objects.create(
        name="News", template=template, segment=audience(100), send_date=DAY, send_time=dt.time(9)
    )
    broadcast_schedule(broadcast=made, now=START - dt.timedelta(days=1))
    return made


@pytest.fixture
def mark_fails_once(monkeypatch):
    """The UPDATE recording a chunk's outcome fails (the database went away) after the
    ESP accepted the chunk: a fault injected into that one statement."""
    real, calls = sending._mark, []

    def failing(*args):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("connection lost while marking the chunk")
        return real(*args)

    monkeypatch.setattr(sending, "_mark", failing)
    monkeypatch.setattr(sending, "SEND_CHUNK", 100)


def delivered_event(message: Message, n: int) -> dict:
    """Mailgun's delivered webhook for an email whose ESP id Keepers never recorded: only
    the Anymail metadata (user-variables) names the message."""
    data = json.loads((Path(__file__).parent / "payloads/mailgun/delivered.json").read_text())
    data["signature"].update(token=f"token-{n:04d}", timestamp=str(int(START.timestamp())))
    event = data["event-data"]
    event.update(id=f"ev-{n}", recipient=message.to_email, timestamp=START.timestamp() + 5)
    event["user-variables"] = {"message_id": str(message.pk), "campaign_id": ""}
    event["message"]["headers"].update(to=message.to_email, **{"message-id": f"mg-{n}@mg"})
    return mailgun_sign(data, MAILGUN_KEY)


def post_event(client, data: dict):
    import base64

    auth = "Basic " + base64.b64encode(b"dev:dev").decode()
    response = client.post(
        "/anymail/mailgun/tracking/",
        data=json.dumps(data),
        content_type="application/json",
        HTTP_AUTHORIZATION=auth,
    )
    assert response.status_code == 200, response.content


def test_a_failed_mark_after_the_esp_accepted_is_unconfirmed_never_sent_then_healed(
    broadcast, tick, mark_fails_once, client, settings, django_capture_on_commit_callbacks
):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": "dev:dev"}
    with pytest.raises(RuntimeError):
        tick(START)
    # the ESP has all 100; Keepers recorded none of them
    assert len(mail.outbox) == 100
    assert Message.objects.filter(status="sending").count() == 100

    tick(START + dt.timedelta(minutes=5))
    broadcast.refresh_from_db()
    assert broadcast.status == "sending"  # not "sent" while messages are being sent

    with time_machine.travel(START + dt.timedelta(minutes=11), tick=False):
        assert messages_unconfirmed_sweep() == 100
    tick(START + dt.timedelta(minutes=12))
    broadcast.refresh_from_db()
    stats = broadcast_stats(broadcast)
    assert broadcast.status == "unconfirmed"
    assert (stats["messages"]["sent"], stats["messages"]["unconfirmed"]) == (0, 100)

    # the ESP's delivered events, found through the Anymail metadata, confirm 60
    messages = list(Message.objects.order_by("pk"))
    with time_machine.travel(START + dt.timedelta(minutes=13), tick=False):
        for n, message in enumerate(messages[:60]):
            post_event(client, delivered_event(message, n))
    stats = broadcast_stats(broadcast)
    assert (stats["messages"]["sent"], stats["messages"]["unconfirmed"]) == (60, 40)
    confirmed = Message.objects.get(pk=messages[0].pk)
    assert confirmed.esp_message_id and confirmed.sent_at and confirmed.delivered_at
    tick(START + dt.timedelta(minutes=14))
    broadcast.refresh_from_db()
    assert broadcast.status == "unconfirmed"  # 40 still are

    # staff resend the other 40 deliberately, after a warning
    staff = User.objects.create_user("ops", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="change_message"))
    client.force_login(staff)
    ids = [str(m.pk) for m in messages]  # all selected: only the unconfirmed are resent
    page = client.post(
        "/admin/campaigns/message/", {"action": "resend_unconfirmed", "_selected_action": ids}
    )
    assert page.status_code == 200 and b"arrive twice" in page.content
    assert b"<strong>40</strong>" in page.content
    assert Message.objects.filter(status="unconfirmed").count() == 40  # nothing yet
    before = len(mail.outbox)
    with (
        time_machine.travel(START + dt.timedelta(minutes=15), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        done = client.post(
            "/admin/campaigns/message/",
            {"action": "resend_unconfirmed", "_selected_action": ids, "confirmed": "yes"},
            follow=True,
        )
    assert done.status_code == 200
    assert len(mail.outbox) - before == 40
    assert Message.objects.filter(status="sent").count() == 100
    tick(START + dt.timedelta(minutes=16))
    broadcast.refresh_from_db()
    assert broadcast.status == "sent"


def test_staff_without_the_change_permission_cannot_resend(broadcast, client):
    message = Message.objects.create(
        contact=broadcast.segment.memberships.first().contact,
        category="marketing",
        idempotency_key="u-1",
        to_email="c0@example.com",
        status="unconfirmed",
        created_at=START,
    )
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_message"))
    client.force_login(viewer)
    response = client.post(
        "/admin/campaigns/message/",
        {"action": "resend_unconfirmed", "_selected_action": [message.pk], "confirmed": "yes"},
    )
    assert response.status_code in (200, 302, 403)
    message.refresh_from_db()
    assert message.status == "unconfirmed"


def test_a_rejection_reported_for_an_unconfirmed_message_marks_it_failed(
    broadcast, client, settings
):
    from anymail.signals import AnymailTrackingEvent

    from campaigns.services.delivery import delivery_event_record

    contact = broadcast.segment.memberships.first().contact
    message = Message.objects.create(
        contact=contact,
        category="marketing",
        idempotency_key="r-1",
        to_email=contact.email,
        status="unconfirmed",
        created_at=START,
    )
    event = AnymailTrackingEvent(
        event_type="rejected",
        event_id="rj-1",
        message_id="esp-1",
        recipient=contact.email,
        metadata={"message_id": str(message.pk)},
        timestamp=START,
    )
    delivery_event_record(event=event, esp_name="Mailgun")
    message.refresh_from_db()
    assert (message.status, message.esp_message_id) == ("failed", "esp-1")
    # metadata naming a message for another recipient confirms nothing
    other = Message.objects.create(
        contact=contact,
        category="marketing",
        idempotency_key="r-2",
        to_email=contact.email,
        status="unconfirmed",
        created_at=START,
    )
    forged = AnymailTrackingEvent(
        event_type="delivered",
        event_id="dl-2",
        recipient="someone-else@example.com",
        metadata={"message_id": str(other.pk)},
        timestamp=START,
    )
    delivery_event_record(event=forged, esp_name="Mailgun")
    other.refresh_from_db()
    assert other.status == "unconfirmed"


def test_a_message_sending_for_less_than_the_timeout_stays_sending(db, settings):
    from crm.models import Contact

    contact = Contact.objects.create(email="s@example.com", created_at=START, updated_at=START)
    fresh = Message.objects.create(
        contact=contact,
        category="marketing",
        idempotency_key="s-1",
        to_email=contact.email,
        status="sending",
        created_at=START,
        claimed_at=START,
    )
    with time_machine.travel(START + dt.timedelta(seconds=599), tick=False):
        assert messages_unconfirmed_sweep() == 0
    settings.KEEPERS_SENDING_TIMEOUT_SECONDS = 60
    with time_machine.travel(START + dt.timedelta(seconds=61), tick=False):
        assert messages_unconfirmed_sweep() == 1
    fresh.refresh_from_db()
    assert fresh.status == "unconfirmed" and "may or may not" in fresh.error


def test_a_webhook_whose_retry_task_was_lost_is_handed_out_again(db, settings):
    settings.KEEPERS_WEBHOOK_LOST_SECONDS = 900
    delivery = WebhookDelivery.objects.create(
        url="http://127.0.0.1:9/nothing-listens",
        payload={},
        idempotency_key="lost",
        created_at=START,
        next_attempt_at=START,
    )
    with time_machine.travel(START, tick=False):
        retry_in = webhook_deliver(delivery_id=delivery.pk)  # fails; its retry task is lost
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == START + dt.timedelta(seconds=retry_in)
    assert (delivery.status, delivery.attempts) == ("pending", 1)

    with time_machine.travel(START + dt.timedelta(minutes=10), tick=False):
        assert webhooks_lost_sweep() == 0  # not overdue by the grace yet
    from config.celery import app

    app.conf.task_eager_propagates = False  # the eager retry raises Retry otherwise
    try:
        with time_machine.travel(START + dt.timedelta(minutes=16), tick=False):
            assert webhooks_lost_sweep() == 1  # handed out again (eager here: it ran)
    finally:
        app.conf.task_eager_propagates = True
    delivery.refresh_from_db()
    assert delivery.attempts >= 2 and delivery.status in ("pending", "failed")


def test_message_bodies_are_purged_after_the_retention_days_keeping_metadata(db, settings):
    from crm.models import Contact

    settings.KEEPERS_MESSAGE_BODY_DAYS = 30
    contact = Contact.objects.create(email="r@example.com", created_at=START, updated_at=START)

    def message(key: str, days_old: int, status: str = "sent") -> Message:
        return Message.objects.create(
            contact=contact,
            category="marketing",
            idempotency_key=key,
            to_email=contact.email,
            subject="Subject stays",
            html="<p>body</p>",
            text="body",
            status=status,
            created_at=START - dt.timedelta(days=days_old),
            sent_at=START - dt.timedelta(days=days_old),
        )

    old, recent, unsent = (
        message("old", 31),
        message("recent", 29),
        message("unc", 40, "unconfirmed"),
    )
    with time_machine.travel(START, tick=False):
        assert message_bodies_purge(batch=1) == 1
        assert message_bodies_purge() == 0  # set-based and idempotent
    old.refresh_from_db()
    assert (old.html, old.text, old.subject, old.status) == ("", "", "Subject stays", "sent")
    assert old.body_purged_at == START and old.sent_at is not None
    for kept in (recent, unsent):
        kept.refresh_from_db()
        assert kept.html == "<p>body</p>" and kept.text == "body"
    settings.KEEPERS_MESSAGE_BODY_DAYS = 0
    assert message_bodies_purge() == 0


def test_the_api_and_the_admin_show_unconfirmed_counts(broadcast, read_api, client):
    from campaigns.models import Campaign

    campaign = Campaign.objects.create(name="C", trigger={"type": "manual"})
    contact = broadcast.segment.memberships.first().contact
    for n, status in enumerate(["sent", "unconfirmed", "unconfirmed"]):
        Message.objects.create(
            contact=contact,
            campaign=campaign,
            broadcast=broadcast,
            category="marketing",
            idempotency_key=f"api-{n}",
            to_email=contact.email,
            status=status,
            created_at=START,
        )

    campaign_stats = read_api.get(f"/api/v1/campaigns/{campaign.pk}/stats/").json()
    broadcast_stats_ = read_api.get(f"/api/v1/broadcasts/{broadcast.pk}/stats/").json()

    assert campaign_stats["messages"]["unconfirmed"] == 2
    assert broadcast_stats_["messages"]["unconfirmed"] == 2
    client.force_login(User.objects.create_superuser("root", password="pw"))
    page = client.get(f"/admin/campaigns/broadcast/{broadcast.pk}/change/").content.decode()
    assert 'data-kp="unconfirmed">2<' in page
    page = client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert "2 unconfirmed" in page
    listing = client.get(
        f"/admin/campaigns/message/?broadcast__exact={broadcast.pk}&status__exact=unconfirmed"
    )
    assert listing.status_code == 200 and listing.content.count(b"c0@example.com") >= 2
