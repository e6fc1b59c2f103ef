"""Broadcast admin: the list, the composer and its validation, the audience preview, the
schedule confirmation, pause / resume / unschedule / cancel (POST only), test sends, the
progress JSON the page polls, and the read-only recipients list."""

import datetime as dt
import json
import re

import pytest
import time_machine
from django.core import mail
from django.db import transaction

from campaigns.models import Broadcast, BroadcastRecipient, EmailTemplate, Message
from campaigns.services.broadcasts import broadcast_schedule, broadcasts_tick
from crm.models import ConsentRecord, Contact, Segment, Topic
from tests.campaigns.test_broadcasts import audience as broadcast_audience

pytestmark = pytest.mark.django_db

UTC = dt.UTC
DAY = dt.date(2026, 3, 10)
THE_DAY_BEFORE = dt.datetime(2026, 3, 9, 12, tzinfo=UTC)
PARIS_NINE = dt.datetime(2026, 3, 10, 8, tzinfo=UTC)
NEW_YORK_NINE = dt.datetime(2026, 3, 10, 13, tzinfo=UTC)
ADMIN = "/admin/campaigns/broadcast/"


def audience(n: int, zones=("Europe/Paris",), *, name: str = "Everyone") -> Segment:
    """tests/campaigns/test_broadcasts.py's audience, in Paris by default."""
    return broadcast_audience(n, zones, name=name)


@pytest.fixture(autouse=True)
def shop_in_paris(settings):
    settings.KEEPERS_SHOP_TIME_ZONE = "Europe/Paris"  # shop-time 09:00 on DAY is 08:00Z


@pytest.fixture(autouse=True)
def the_day_before():
    """Staff work the day before the send (the clock runs on from there)."""
    with time_machine.travel(THE_DAY_BEFORE):
        yield


@pytest.fixture
def newsletter(db):
    topic = Topic.objects.create(slug="newsletter", name="Newsletter")
    return EmailTemplate.objects.create(
        name="newsletter",
        subject="March news, {{ first_name }}",
        html_body="<h1>What's new</h1><p>Hello {{ first_name }}</p>",
        topic=topic,
    )


@pytest.fixture
def tick(django_capture_on_commit_callbacks):
    """One beat tick at `at` (Celery is eager here: batches and sends run inline)."""

    def run(at: dt.datetime) -> dict:
        with (
            time_machine.travel(at, tick=False),
            django_capture_on_commit_callbacks(execute=True),
        ):
            return broadcasts_tick()

    return run


@pytest.fixture
def sending(newsletter, tick) -> Broadcast:
    """Six recipients at 09:00 local: Paris's three sent, New York's three still waiting."""
    segment = audience(6, ("Europe/Paris", "America/New_York"))
    broadcast = Broadcast.objects.create(
        name="March news",
        template=newsletter,
        segment=segment,
        send_date=DAY,
        send_time=dt.time(9),
        timing=Broadcast.Timing.LOCAL,
    )
    broadcast_schedule(broadcast=broadcast)
    tick(PARIS_NINE)
    broadcast.refresh_from_db()
    assert broadcast.status == Broadcast.Status.SENDING
    return broadcast


def composer(**overrides) -> dict:
    data = {
        "name": "March news",
        "template": "",
        "subject_b": "",
        "segment": "",
        "topic": "",
        "send_date": "2026-03-10",
        "send_time": "09:00",
        "timing": "shop",
        "repeat": "",
        "ab_percent": "0",
        "ab_metric": "opens",
        "ab_wait_hours": "4",
        "cap_24h": "",
        "cap_7d": "",
        "max_delay_hours": "24",
        "attribution_days": "5",
    }
    data.update({k: str(v) for k, v in overrides.items()})
    return data


def page_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def flashed(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# ------------------------------------------------------------------------------------------
# The list
# ------------------------------------------------------------------------------------------
def test_the_list_shows_when_audience_and_progress_in_pinned_queries(
    staff_client, newsletter, django_assert_max_num_queries
):
    segment = audience(3)
    contacts = list(Contact.objects.order_by("pk"))
    statuses = ["draft", "scheduled", "sending", "paused", "sent", "cancelled"]
    for i in range(20):
        status = statuses[i % len(statuses)]
        started = status in ("sending", "paused", "sent")
        broadcast = Broadcast.objects.create(
            name=f"Issue {i}",
            template=newsletter,
            segment=segment,
            send_date=DAY + dt.timedelta(days=i),
            send_time=dt.time(9),
            timing="local" if i % 2 else "shop",
            status=status,
            audience_size=10_000 if started else None,
        )
        if started:
            Message.objects.bulk_create(
                Message(
                    contact=c,
                    broadcast=broadcast,
                    category="marketing",
                    idempotency_key=f"b{broadcast.pk}:{c.pk}",
                    to_email=c.email,
                    status="sent",
                    created_at=PARIS_NINE,
                )
                for c in contacts[: 1 + i % 3]
            )

    with django_assert_max_num_queries(7):
        page = page_of(staff_client.get(ADMIN))

    assert page.count("/change/") >= 20
    assert "10,000" in page and "/ 10,000 sent" in page
    assert "3 / 10,000 sent" in page  # Issue 2: sending, three messages sent
    assert "2026-03-10 09:00 shop time (Europe/Paris)" in page
    assert "each contact&#x27;s local time" in page
    filtered = page_of(staff_client.get(ADMIN, {"status__exact": "sent", "q": "Issue"}))
    assert "Issue 4" in filtered and "Issue 5<" not in filtered


# ------------------------------------------------------------------------------------------
# The composer
# ------------------------------------------------------------------------------------------
def test_the_composer_makes_a_draft_and_warns_about_a_long_subject_b(staff_client, newsletter):
    segment = audience(2)
    response = staff_client.post(
        f"{ADMIN}add/",
        composer(
            template=newsletter.pk,
            segment=segment.pk,
            ab_percent=20,
            subject_b="A much longer second subject line to try",
        ),
        follow=True,
    )

    broadcast = Broadcast.objects.get()
    assert broadcast.status == Broadcast.Status.DRAFT and broadcast.ab_percent == 20
    assert any("Subject B is 40 characters long" in m for m in flashed(response))


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"topic": "topic"}, "segment", "Choose the audience: a segment or a topic"),
        ({"ab_percent": 10}, "subject_b", "An A/B test needs subject B."),
        ({"subject_b": "Other"}, "ab_percent", "Subject B needs an A/B sample percentage."),
        ({"ab_percent": 1, "subject_b": "Other"}, "ab_percent", "must be 2–100 %"),
    ],
)
def test_the_composer_shows_the_services_validation_on_the_field(
    staff_client, newsletter, overrides, field, message
):
    segment = audience(1)
    if overrides.get("topic") == "topic":
        overrides["topic"] = newsletter.topic.pk

    response = staff_client.post(
        f"{ADMIN}add/", composer(template=newsletter.pk, segment=segment.pk, **overrides)
    )

    page = page_of(response)
    errors = response.context["adminform"].form.errors
    assert any(message in e for e in errors[field]), errors
    assert message.split("–")[0] in page
    assert not Broadcast.objects.exists()


def test_a_topic_broadcast_needs_a_marketing_template(staff_client, newsletter):
    receipt = EmailTemplate.objects.create(
        name="receipt", subject="Receipt", category="transactional", html_body="<p>x</p>"
    )
    response = staff_client.post(
        f"{ADMIN}add/", composer(template=receipt.pk, topic=newsletter.topic.pk)
    )
    assert "must use a marketing template" in str(response.context["adminform"].form.errors)


def test_a_draft_page_shows_the_audience_preview_and_its_actions(
    staff_client, newsletter, django_assert_max_num_queries
):
    segment = audience(12)
    broadcast = Broadcast.objects.create(
        name="March news", template=newsletter, segment=segment, send_date=DAY, send_time=dt.time(9)
    )

    with django_assert_max_num_queries(9):
        page = page_of(staff_client.get(f"{ADMIN}{broadcast.pk}/change/"))

    assert 'Status: <span data-kp="status">Draft</span>' in page
    assert '<strong class="kp-big">12</strong> contacts would get it' in page
    assert len(re.findall(r'href="/admin/crm/contact/\d+/change/"', page)) == 10  # a sample
    assert f'href="{ADMIN}{broadcast.pk}/schedule/"' in page
    assert f"{ADMIN}{broadcast.pk}/test-send/" in page
    assert f"/admin/campaigns/broadcastrecipient/?broadcast__id__exact={broadcast.pk}" in page
    assert "2026-03-10 08:00 UTC (2026-03-10 09:00 Europe/Paris)" in page
    assert 'name="_save"' in page  # a draft is edited here
    assert "broadcast_progress.js" not in page  # nothing to poll for a draft


def test_a_local_time_preview_lists_the_waves(staff_client, newsletter):
    segment = audience(5, ("Asia/Tokyo", "Europe/Paris", "Europe/Paris", "America/New_York"))
    broadcast = Broadcast.objects.create(
        name="Local",
        template=newsletter,
        segment=segment,
        send_date=DAY,
        send_time=dt.time(9),
        timing=Broadcast.Timing.LOCAL,
    )

    page = page_of(staff_client.get(f"{ADMIN}{broadcast.pk}/change/"))

    for at, n in (
        ("2026-03-10 00:00 UTC", 2),
        ("2026-03-10 08:00 UTC", 2),
        ("2026-03-10 13:00 UTC", 1),
    ):
        assert f'<tr><td>{at}</td><td class="kp-num">{n}</td></tr>' in page


def test_a_draft_scheduled_meanwhile_is_not_overwritten_by_the_composer(staff_client, newsletter):
    segment = audience(1)
    broadcast = Broadcast.objects.create(
        name="March news", template=newsletter, segment=segment, send_date=DAY, send_time=dt.time(9)
    )
    broadcast_schedule(broadcast=broadcast)

    response = staff_client.post(
        f"{ADMIN}{broadcast.pk}/change/",
        composer(name="Renamed", template=newsletter.pk, segment=segment.pk),
    )

    assert response.status_code == 403  # a scheduled broadcast is read-only
    broadcast.refresh_from_db()
    assert broadcast.name == "March news" and broadcast.status == "scheduled"


def test_the_composer_refuses_a_draft_scheduled_after_the_page_was_loaded(newsletter):
    from campaigns.admin_broadcasts import BroadcastForm

    segment = audience(1)
    loaded = Broadcast.objects.create(
        name="March news", template=newsletter, segment=segment, send_date=DAY, send_time=dt.time(9)
    )
    broadcast_schedule(broadcast=Broadcast.objects.get(pk=loaded.pk))  # in another tab

    form = BroadcastForm(
        composer(name="Renamed", template=newsletter.pk, segment=segment.pk), instance=loaded
    )

    with transaction.atomic():  # as the admin's change view runs it
        assert not form.is_valid()
    assert "no longer a draft" in str(form.non_field_errors())


# ------------------------------------------------------------------------------------------
# Scheduling
# ------------------------------------------------------------------------------------------
def test_the_schedule_confirmation_shows_count_and_sample_and_the_post_schedules(
    staff_client, newsletter
):
    segment = audience(4)
    broadcast = Broadcast.objects.create(
        name="March news", template=newsletter, segment=segment, send_date=DAY, send_time=dt.time(9)
    )
    url = f"{ADMIN}{broadcast.pk}/schedule/"

    page = page_of(staff_client.get(url))

    assert '<strong class="kp-big">4</strong> contacts would get it' in page
    assert page.count("@example.com</a>") == 4
    assert "Sending starts at <strong>2026-03-10 08:00 UTC" in page
    assert "March news, {{ first_name }}" in page
    assert 'value="Confirm and schedule"' in page and "csrfmiddlewaretoken" in page
    broadcast.refresh_from_db()
    assert broadcast.status == "draft"  # looking changes nothing

    response = staff_client.post(url, follow=True)

    broadcast.refresh_from_db()
    assert broadcast.status == Broadcast.Status.SCHEDULED
    assert broadcast.scheduled_by == staff_client.user
    assert any(
        m.startswith("Scheduled: sending starts at 2026-03-10 08:00 UTC") for m in flashed(response)
    )
    page = page_of(response)
    assert 'Status: <span data-kp="status">Scheduled</span>' in page
    # scheduled, not yet frozen: the panel says when it will be, not that it is
    assert "Nothing sent yet: sending starts at 2026-03-10 08:00 UTC" in page
    assert "; the audience is frozen then." in page
    assert "the audience is frozen and" not in page and "Frozen audience" not in page
    assert "broadcast_progress.js" in page
    assert 'form="kp-move-pause"' in page and 'form="kp-move-unschedule"' in page
    assert 'name="_save"' not in page  # read-only now


def test_scheduling_an_invalid_or_past_broadcast_shows_the_reason(staff_client, newsletter):
    segment = audience(1)
    both = Broadcast.objects.create(
        name="Both",
        template=newsletter,
        segment=segment,
        topic=newsletter.topic,
        send_date=DAY,
        send_time=dt.time(9),
    )
    page = page_of(staff_client.get(f"{ADMIN}{both.pk}/schedule/"))
    assert "Choose the audience" in page and "disabled" in page

    response = staff_client.post(f"{ADMIN}{both.pk}/schedule/", follow=True)
    assert "Choose the audience: a segment or a topic, not both." in flashed(response)
    late = Broadcast.objects.create(
        name="Late",
        template=newsletter,
        segment=segment,
        send_date=dt.date(2026, 3, 1),
        send_time=dt.time(9),
    )
    response = staff_client.post(f"{ADMIN}{late.pk}/schedule/", follow=True)
    assert "The send time is more than a day in the past: pick a new date." in flashed(response)
    assert set(Broadcast.objects.values_list("status", flat=True)) == {"draft"}


# ------------------------------------------------------------------------------------------
# Moves
# ------------------------------------------------------------------------------------------
def test_pause_resume_and_cancel_are_posts_and_a_get_changes_nothing(staff_client, sending):
    base = f"{ADMIN}{sending.pk}"

    assert staff_client.get(f"{base}/pause/").status_code == 405
    sending.refresh_from_db()
    assert sending.status == "sending"

    response = staff_client.post(f"{base}/pause/", follow=True)
    sending.refresh_from_db()
    assert sending.status == "paused"
    assert "Paused: the broadcast is paused." in flashed(response)
    assert 'form="kp-move-resume"' in page_of(response)

    assert staff_client.get(f"{base}/resume/").status_code == 405
    sending.refresh_from_db()
    assert sending.status == "paused"
    staff_client.post(f"{base}/resume/")
    sending.refresh_from_db()
    assert sending.status == "sending"

    confirm = page_of(staff_client.get(f"{base}/cancel/"))  # asks first
    assert "the 3 recipients still waiting are cancelled" in confirm
    assert 'value="Yes, cancel the broadcast"' in confirm
    sending.refresh_from_db()
    assert sending.status == "sending"
    response = staff_client.post(f"{base}/cancel/", follow=True)
    sending.refresh_from_db()
    assert sending.status == "cancelled"
    assert sending.recipients.filter(status="cancelled").count() == 3
    assert "Cancelled: the broadcast is cancelled." in flashed(response)


def test_unschedule_takes_it_back_to_a_draft(staff_client, newsletter):
    broadcast = Broadcast.objects.create(
        name="N", template=newsletter, segment=audience(1), send_date=DAY, send_time=dt.time(9)
    )
    broadcast_schedule(broadcast=broadcast)

    staff_client.post(f"{ADMIN}{broadcast.pk}/unschedule/")

    broadcast.refresh_from_db()
    assert broadcast.status == "draft"


def test_a_move_the_status_does_not_allow_shows_the_error(staff_client, sending):
    response = staff_client.post(f"{ADMIN}{sending.pk}/resume/", follow=True)

    assert "A sending broadcast cannot be resumed." in flashed(response)
    sending.refresh_from_db()
    assert sending.status == "sending"


# ------------------------------------------------------------------------------------------
# Test sends
# ------------------------------------------------------------------------------------------
def test_a_test_send_goes_to_the_staff_address_marked_test(staff_client, newsletter):
    segment = audience(2)
    broadcast = Broadcast.objects.create(
        name="N", template=newsletter, segment=segment, send_date=DAY, send_time=dt.time(9)
    )
    first = Contact.objects.order_by("pk").first()
    url = f"{ADMIN}{broadcast.pk}/test-send/"
    form = page_of(staff_client.get(url))
    assert f'value="{first.pk}"' in form and 'value="staff@example.com"' in form

    response = staff_client.post(url, {"contact": first.pk, "send_to": "qa@example.com"})

    assert response.status_code == 302
    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["qa@example.com"], "[TEST] March news, C0")
    ]
    assert not Message.objects.exists()  # nothing recorded against the broadcast


def test_an_ab_test_send_sends_both_subjects(staff_client, newsletter):
    broadcast = Broadcast.objects.create(
        name="N",
        template=newsletter,
        segment=audience(1),
        send_date=DAY,
        send_time=dt.time(9),
        ab_percent=20,
        subject_b="Only for you, {{ first_name }}",
    )
    contact = Contact.objects.get()

    staff_client.post(
        f"{ADMIN}{broadcast.pk}/test-send/", {"contact": contact.pk, "send_to": "qa@example.com"}
    )

    assert sorted(m.subject for m in mail.outbox) == [
        "[TEST] A: March news, C0",
        "[TEST] B: Only for you, C0",
    ]


def test_a_template_that_fails_to_render_is_reported_not_sent(staff_client, newsletter):
    newsletter.subject = "{{ attributes.nickname }}"  # empty for this contact
    newsletter.save()
    broadcast = Broadcast.objects.create(
        name="N", template=newsletter, segment=audience(1), send_date=DAY, send_time=dt.time(9)
    )
    contact = Contact.objects.get()

    response = staff_client.post(
        f"{ADMIN}{broadcast.pk}/test-send/", {"contact": contact.pk, "send_to": "qa@example.com"}
    )

    assert "This template fails for that contact: The subject rendered empty." in page_of(response)
    assert mail.outbox == []


# ------------------------------------------------------------------------------------------
# Progress and results
# ------------------------------------------------------------------------------------------
def test_a_sending_broadcasts_page_shows_progress_and_polls(staff_client, sending):
    Message.objects.filter(broadcast=sending).update(opened_at=PARIS_NINE)

    page = page_of(staff_client.get(f"{ADMIN}{sending.pk}/change/"))

    assert '<strong data-kp="progress">3 / 6 sent</strong>' in page
    assert '<strong data-kp="remaining">3</strong>' in page
    assert 'aria-valuenow="50"' in page
    assert '<td class="kp-num" data-kp="opened_rate">100.0 %</td>' in page
    assert f'data-kp-url="{ADMIN}{sending.pk}/progress.json"' in page
    assert "campaigns/broadcast_progress.js" in page
    assert "Frozen at 2026-03-10 08:00 UTC with 6 recipients" in page


def test_the_progress_json_returns_the_stats_and_status(staff_client, sending, tick):
    consent = Contact.objects.filter(timezone="America/New_York").order_by("pk").first()
    ConsentRecord.objects.create(
        contact=consent, status="withdrawn", source="test", recorded_at=PARIS_NINE
    )
    tick(NEW_YORK_NINE)
    tick(NEW_YORK_NINE + dt.timedelta(minutes=1))  # the tick after the last sends closes it

    response = staff_client.get(f"{ADMIN}{sending.pk}/progress.json")

    assert response.status_code == 200
    data = json.loads(response.content)
    assert data["status"] == "sent"
    assert data["progress"]["queued"] == 5 and data["progress"]["skipped"] == 1
    assert data["skipped_reasons"] == [{"reason": "no marketing consent", "count": 1}]
    assert data["messages"]["sent"] == 5
    assert data["display"]["text"]["progress"] == "5 / 6 sent"
    assert data["display"]["percent"] == 100
    assert data["conversions"]["window_days"] == 5


def test_the_progress_json_is_for_staff_only(client, sending):
    response = client.get(f"{ADMIN}{sending.pk}/progress.json")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_an_ab_broadcast_shows_each_variant_and_the_winner(staff_client, newsletter, tick):
    segment = audience(100)
    broadcast = Broadcast.objects.create(
        name="AB",
        template=newsletter,
        segment=segment,
        send_date=DAY,
        send_time=dt.time(9),
        subject_b="Only for you",
        ab_percent=20,
        ab_wait_hours=2,
    )
    broadcast_schedule(broadcast=broadcast)
    tick(PARIS_NINE)
    Message.objects.filter(recipient__variant="b").update(opened_at=PARIS_NINE)
    tick(PARIS_NINE + dt.timedelta(hours=2))

    page = page_of(staff_client.get(f"{ADMIN}{broadcast.pk}/change/"))

    assert '<td class="kp-num" data-kp="a_sent">10</td>' in page
    assert '<span data-kp="b_opened_rate">100.0 %</span>' in page
    assert "Subject B won on open rate (2026-03-10 10:00 UTC)" in page


# ------------------------------------------------------------------------------------------
# Recipients
# ------------------------------------------------------------------------------------------
def test_the_recipients_list_is_read_only_and_pinned(
    staff_client, sending, django_assert_max_num_queries
):
    url = f"/admin/campaigns/broadcastrecipient/?broadcast__id__exact={sending.pk}"

    with django_assert_max_num_queries(6):
        page = page_of(staff_client.get(url))

    assert page.count("@example.com") >= 6
    assert len(re.findall(r'href="/admin/campaigns/message/\d+/change/"', page)) == 3
    assert "Waiting for their send time" in page and "Message queued" in page
    assert "/admin/campaigns/broadcastrecipient/add/" not in page
    assert "c1@example.com" in page_of(
        staff_client.get(url, {"q": "c1@", "status__exact": "pending"})
    )
    assert page_of(staff_client.get(url, {"variant": "none"})).count("@example.com</a>") == 6
    assert "@example.com</a>" not in page_of(staff_client.get(url, {"variant": "a"}))
    recipient = BroadcastRecipient.objects.filter(broadcast=sending).first()
    assert (
        staff_client.get(f"/admin/campaigns/broadcastrecipient/{recipient.pk}/change/").status_code
        == 200
    )
    assert (
        staff_client.post(f"/admin/campaigns/broadcastrecipient/{recipient.pk}/delete/").status_code
        == 403
    )


@pytest.mark.parametrize("timing", ["shop", "local"])
def test_a_broadcast_stored_for_year_one_has_pages_that_say_so(staff_client, newsletter, timing):
    """Before the API's year bounds (crm/services/parsing.py), 0001-01-01 was accepted;
    such a row's pages render, and scheduling it is refused with the reason."""
    old = Broadcast.objects.create(
        name="Year one",
        template=newsletter,
        segment=audience(1),
        send_date=dt.date(1, 1, 1),
        send_time=dt.time(9),
        timing=timing,
    )

    for url in (ADMIN, f"{ADMIN}{old.pk}/change/", f"{ADMIN}{old.pk}/schedule/"):
        page = staff_client.get(url)
        assert page.status_code == 200, url
    assert "outside the years" in page_of(staff_client.get(f"{ADMIN}{old.pk}/change/"))

    answer = staff_client.post(f"{ADMIN}{old.pk}/schedule/", follow=True)
    assert any("outside the years" in text for text in flashed(answer))
    old.refresh_from_db()
    assert old.status == Broadcast.Status.DRAFT
