"""End to end with real processes: a Celery worker and beat on Redis against PostgreSQL,
events through the HTTP API, time moved for every process, mail counted in a file outbox."""

import time
from collections import Counter

import httpx
import pytest
from django.utils import timezone

from campaigns.models import Campaign, EmailTemplate, Enrollment, Message, StepRun
from campaigns.services.definitions import campaign_publish
from crm import clock
from crm.models import Contact
from crm.services.api_keys import api_key_create
from crm.services.consent import consent_record
from crm.services.contacts import contact_create

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def escalation() -> Campaign:
    for name, subject in (
        ("cart-1", "Reminder"),
        ("cart-2", "Free shipping"),
        ("cart-3", "Discount"),
    ):
        EmailTemplate.objects.create(name=name, subject=subject, html_body="<p>Your cart</p>")
    step = lambda i, t, c, **b: {"id": i, "type": t, "config": c, **b}  # noqa: E731
    ordered = {"kind": "event_since_enrollment", "event": "Order Completed", "match": "cart_id"}
    campaign = Campaign.objects.create(
        name="Abandoned cart",
        trigger={"type": "event", "name": "Checkout Started"},
        reentry="always",
        goals=[{"event": "Order Completed", "match": "cart_id"}],
        steps=[
            step("w1", "wait", {"hours": 1}, next="m1"),
            step("m1", "send_email", {"template": "cart-1"}, next="w2"),
            step("w2", "wait", {"days": 1}, next="c1"),
            step("c1", "condition", ordered, yes=None, no="m2"),
            step("m2", "send_email", {"template": "cart-2"}, next="w3"),
            step("w3", "wait", {"days": 2}, next="c2"),
            step("c2", "condition", ordered, yes=None, no="m3"),
            step("m3", "send_email", {"template": "cart-3"}),
        ],
    )
    campaign_publish(campaign=campaign)
    return campaign


def customer(email: str):
    contact = contact_create(email=email)
    consent_record(contact=contact, status="granted")
    return contact


def subjects(keepers, email: str) -> list[str]:
    return [m["subject"] for m in keepers.outbox() if m["to"] == [email]]


def test_abandoned_cart_through_the_api_a_real_worker_and_beat(keepers, live_server):
    escalation()
    customer("buyer@example.com")
    customer("nobuy@example.com")
    key = api_key_create(name="e2e", scope="write")[1]
    keepers.worker()
    keepers.beat()
    api = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )

    posted = time.monotonic()
    response = api.post(
        "/api/v1/events/",
        json=[
            {
                "name": "Checkout Started",
                "email": who,
                "message_id": f"co-{who}",
                "properties": {"cart_id": f"c-{who}"},
            }
            for who in ("buyer@example.com", "nobuy@example.com")
        ],
    )
    assert response.status_code == 200
    keepers.wait_for(lambda: Enrollment.objects.count() == 2, what="enrolment")
    delay = time.monotonic() - posted
    print(f"event → enrolment delay: {delay:.1f} s")
    assert delay < 15
    # the first step (wait 1 h) starts its hour when a worker runs it: move the clock only
    # after it has, or the hour would start after the move
    keepers.wait_for(
        lambda: Enrollment.objects.filter(current_step="m1").count() == 2, what="the first wait"
    )

    keepers.advance_clock(3600 + 60)
    keepers.wait_for(lambda: len(keepers.outbox()) == 2, what="the first reminders")
    api.post(
        "/v1/track",
        json={
            "type": "track",
            "event": "Order Completed",
            "userId": "u-buyer",
            "context": {"traits": {"email": "buyer@example.com"}},
            "messageId": "buy-1",
            "timestamp": clock.now().isoformat(),
            "properties": {"order_id": "o-1", "cart_id": "c-buyer@example.com", "total": 42},
        },
        auth=(key, ""),
    )
    keepers.wait_for(
        lambda: Enrollment.objects.filter(status="exited_goal").count() == 1, what="the goal"
    )

    keepers.advance_clock(86400 + 3600)
    keepers.wait_for(lambda: len(keepers.outbox()) == 3, what="the free-shipping email")
    keepers.advance_clock(2 * 86400 + 3600)
    keepers.wait_for(lambda: len(keepers.outbox()) == 4, what="the discount email")
    time.sleep(3)  # a few more beats: nothing else may arrive

    assert subjects(keepers, "buyer@example.com") == ["Reminder"]
    assert subjects(keepers, "nobuy@example.com") == ["Reminder", "Free shipping", "Discount"]
    assert len(keepers.outbox()) == 4
    assert dict(Enrollment.objects.values_list("contact__email", "status")) == {
        "buyer@example.com": "exited_goal",
        "nobuy@example.com": "completed",
    }


def one_send_campaign(n_contacts: int) -> list[int]:
    EmailTemplate.objects.create(
        name="hello", subject="Hello", html_body="<p>Hello {{ first_name }}</p>"
    )
    campaign = Campaign.objects.create(
        name="Bulk",
        trigger={"type": "manual"},
        steps=[{"id": "hello", "type": "send_email", "config": {"template": "hello"}}],
    )
    version = campaign_publish(campaign=campaign)
    contacts = [customer(f"bulk{n}@example.com") for n in range(n_contacts)]
    now = timezone.now()
    Enrollment.objects.bulk_create(
        [
            Enrollment(
                campaign=campaign,
                version=version,
                contact=c,
                current_step="hello",
                next_run_at=now,
                entered_at=now,
                trigger_key=f"bulk-{c.pk}",
            )
            for c in contacts
        ]
    )
    return [c.pk for c in contacts]


def assert_exactly_once(keepers, n: int) -> None:
    counts = Counter(m["to"][0] for m in keepers.outbox())
    assert len(counts) == n and set(counts.values()) == {1}, counts.most_common(3)
    runs = Counter(StepRun.objects.values_list("enrollment_id", flat=True))
    assert len(runs) == n and set(runs.values()) == {1}
    assert Message.objects.filter(status="sent").count() == n
    assert not Enrollment.objects.filter(status="active").exists()


def test_a_worker_killed_mid_batch_loses_nothing_and_sends_nothing_twice(keepers):
    n = 400
    one_send_campaign(n)
    keepers.env["KEEPERS_ENGINE_BATCH"] = "10"
    keepers.worker("sender", queues="send", concurrency=1)
    keepers.worker("engine", queues="engine", concurrency=2)
    keepers.send("campaigns.tasks.engine_tick")
    keepers.wait_for(lambda: StepRun.objects.count() >= 40, what="the engine to be mid-way")
    keepers.kill("engine")
    done_before_restart = StepRun.objects.count()
    assert done_before_restart < n, "the engine finished before it could be killed; raise n"
    keepers.worker("engine-2", queues="engine", concurrency=2)
    keepers.beat()
    keepers.wait_for(
        lambda: len(keepers.outbox()) >= n and not Message.objects.exclude(status="sent").exists(),
        timeout=240,
        what="every message",
    )
    time.sleep(2)
    assert_exactly_once(keepers, n)


def test_two_workers_ticking_at_once_never_take_the_same_enrollment(keepers):
    n = 300
    one_send_campaign(n)
    keepers.env["KEEPERS_ENGINE_BATCH"] = "25"
    keepers.worker("a", concurrency=2)
    keepers.worker("b", concurrency=2)
    for _ in range(4):  # the same due enrollments fanned out four times, to both workers
        keepers.send("campaigns.tasks.engine_tick")
    keepers.wait_for(
        lambda: len(keepers.outbox()) >= n and not Message.objects.exclude(status="sent").exists(),
        timeout=240,
        what="every message",
    )
    time.sleep(2)
    assert_exactly_once(keepers, n)
    assert Contact.objects.count() == n
