"""The broadcast's test send has what the template's has (one form, one service): a sample
event of the contact's (their last cart…) or typed properties, rendered with the context a
send would have, and the test-send rate limit per staff user and address."""

from __future__ import annotations

import datetime as dt
from datetime import UTC

import pytest
import time_machine
from django.core import mail
from django.core.cache import cache
from django.test import override_settings

from campaigns.models import Broadcast, EmailTemplate, EmailTemplateVariant, Message
from crm.models import Contact
from tests.campaigns.conftest import shopper, track
from tests.campaigns.test_broadcasts import audience

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 9, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clock_and_limits():
    cache.clear()  # the rate limit's counters
    with time_machine.travel(NOW):
        yield


@pytest.fixture
def cart_news(db) -> Broadcast:
    template = EmailTemplate.objects.create(
        name="cart news",
        subject="{{ broadcast.name }} for {{ first_name }}",
        html_body="{% for item in event.properties.products %}<p>{{ item.name }}</p>{% endfor %}"
        "{% if event.properties.coupon %}<p>Code {{ event.properties.coupon }}</p>{% endif %}",
    )
    return Broadcast.objects.create(
        name="Spring",
        template=template,
        segment=audience(1),
        send_date=dt.date(2026, 3, 10),
        send_time=dt.time(9),
    )


def url(broadcast: Broadcast) -> str:
    return f"/admin/campaigns/broadcast/{broadcast.pk}/test-send/"


def flashed(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_form_offers_the_template_preview_s_samples_and_properties(staff_client, cart_news):
    page = staff_client.get(url(cart_news)).content.decode()
    for name in ("contact", "sample", "event_name", "properties", "send_to"):
        assert f'name="{name}"' in page
    assert "Their last cart" in page and "key = value" in page


def test_a_test_after_the_contact_s_last_cart_shows_its_items(staff_client, cart_news):
    shopper("pia@example.com", first_name="Pia")
    track("pia@example.com", "Checkout Started", NOW, "c1", products=[{"name": "Teapot"}])
    pia = Contact.objects.get(email="pia@example.com")

    response = staff_client.post(
        url(cart_news),
        {"contact": pia.pk, "sample": "cart", "send_to": "qa@example.com"},
        follow=True,
    )

    (sent,) = mail.outbox
    assert sent.to == ["qa@example.com"] and sent.subject == "[TEST] Spring for Pia"
    assert "Teapot" in sent.alternatives[0][0]
    assert any("after the event “Checkout Started”" in m for m in flashed(response))
    assert not Message.objects.exists()  # nothing recorded


def test_typed_properties_reach_both_subjects_of_an_ab_test(staff_client, cart_news):
    cart_news.ab_percent, cart_news.subject_b = 20, "B for {{ first_name }}"
    cart_news.save()
    contact = Contact.objects.get()
    form = {"contact": contact.pk, "event_name": "Coupon Granted", "send_to": "qa@example.com"}

    bad = staff_client.post(url(cart_news), {**form, "properties": "no equals sign"})
    assert "Line 1 is not" in bad.content.decode() and not mail.outbox
    staff_client.post(url(cart_news), {**form, "properties": "coupon = SAVE5"})

    assert sorted(m.subject for m in mail.outbox) == [
        "[TEST] A: Spring for C0",
        "[TEST] B: B for C0",
    ]
    assert all("Code SAVE5" in m.alternatives[0][0] for m in mail.outbox)


def test_a_missing_sample_is_said_and_rendered_without(staff_client, cart_news):
    contact = Contact.objects.get()
    response = staff_client.post(
        url(cart_news),
        {"contact": contact.pk, "sample": "order", "send_to": "qa@example.com"},
        follow=True,
    )
    assert len(mail.outbox) == 1
    assert any("no such event" in m for m in flashed(response))


@override_settings(KEEPERS_RATE_TEST_SEND="2/hour")
def test_test_sends_are_rate_limited_like_the_template_s(staff_client, cart_news):
    """An A/B test's two subjects are one test; past the limit nothing is sent and the
    page says why."""
    cart_news.ab_percent, cart_news.subject_b = 20, "B"
    cart_news.save()
    form = {"contact": Contact.objects.get().pk, "send_to": "qa@example.com"}
    for _ in range(2):
        assert staff_client.post(url(cart_news), form).status_code == 302
    assert len(mail.outbox) == 4

    limited = staff_client.post(url(cart_news), form)

    assert limited.status_code == 200
    assert "Too many requests" in limited.content.decode()
    assert len(mail.outbox) == 4


def test_an_ab_test_in_the_contact_s_language_sends_that_language_s_second_subject(
    staff_client, cart_news
):
    """As the broadcast's sends: side B of a Japanese reader takes the Japanese version's
    second subject."""
    cart_news.ab_percent, cart_news.subject_b = 20, "B for {{ first_name }}"
    cart_news.save()
    EmailTemplateVariant.objects.create(
        template=cart_news.template,
        language="ja",
        subject="{{ first_name }}さんへ 春",
        subject_b="{{ first_name }}さんへ B",
        html_body="<p>こんにちは</p>",
    )
    hana = shopper("hana@example.com", "花", locale="ja-JP")

    staff_client.post(url(cart_news), {"contact": hana.pk, "send_to": "qa@example.com"})

    assert sorted(m.subject for m in mail.outbox) == [
        "[TEST] A: 花さんへ 春",
        "[TEST] B: 花さんへ B",
    ]
