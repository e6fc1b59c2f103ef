"""Preference center, one-click unsubscribe, double opt-in, fresh links (server side)."""

import re

import pytest
from django.core import mail
from rest_framework.test import APIClient

from crm.links import preferences_token, unsubscribe_token
from crm.models import ConsentRecord, ContactPreference, Topic
from crm.selectors import consent_current
from tests.campaigns.conftest import form_token, shopper

pytestmark = pytest.mark.django_db


@pytest.fixture
def topics(db):
    return [
        Topic.objects.create(slug="newsletter", name="Monthly newsletter"),
        Topic.objects.create(slug="offers", name="Offers and sales"),
    ]


def log(contact):
    return list(
        ConsentRecord.objects.filter(contact=contact)
        .order_by("recorded_at", "id")
        .values_list("topic", "status", "source")
    )


def test_topics_and_frequency_are_saved_to_the_consent_log(client, topics):
    contact = shopper("pref@example.com")
    url = f"/p/{preferences_token(contact.pk)}/"
    page = client.get(url).content.decode()
    assert "Monthly newsletter" in page and 'value="newsletter" checked' in page
    client.post(
        url,
        {"action": "save", "topics": ["newsletter"], "frequency": "weekly"},
        HTTP_USER_AGENT="pytest-browser",
    )
    assert consent_current(contact=contact, topic="offers") == "withdrawn"
    assert consent_current(contact=contact, topic="newsletter") == "granted"
    assert ContactPreference.objects.get(contact=contact).frequency == "weekly"
    last = ConsentRecord.objects.filter(contact=contact).order_by("-id").first()
    assert (last.source, last.ip, last.user_agent) == (
        "preference center",
        "127.0.0.1",
        "pytest-browser",
    )
    client.post(url, {"action": "unsubscribe"})
    assert consent_current(contact=contact) == "withdrawn"
    assert "Subscribe again" in client.get(url).content.decode()
    client.post(url, {"action": "resubscribe"})
    assert consent_current(contact=contact) == "granted"
    assert [t for t, _s, _src in log(contact)] == [
        "all",
        "offers",
        "frequency:weekly",
        "all",
        "all",
    ]


def test_unsubscribe_link_get_shows_a_one_button_confirmation(client, topics):
    contact = shopper("u@example.com")
    url = f"/u/{unsubscribe_token(contact.pk)}/"
    page = client.get(url).content.decode()
    assert "Yes, unsubscribe me" in page
    assert consent_current(contact=contact) == "granted"
    client.post(url, {"action": "unsubscribe"})
    assert consent_current(contact=contact) == "withdrawn"


def test_the_page_form_on_the_unsubscribe_url_needs_its_csrf_token(topics):
    contact = shopper("csrf@example.com")
    client = APIClient(enforce_csrf_checks=True)
    response = client.post(f"/u/{unsubscribe_token(contact.pk)}/", {"action": "unsubscribe"})
    assert response.status_code == 403
    assert consent_current(contact=contact) == "granted"


def test_a_tampered_link_offers_a_fresh_one_rate_limited(
    client, django_capture_on_commit_callbacks
):
    contact = shopper("lost@example.com")
    token = preferences_token(contact.pk)
    bad = client.get(f"/p/{token[:-3]}xyz/")
    assert bad.status_code == 404 and "Email me a new link" in bad.content.decode()
    statuses = []
    for _ in range(5):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/p/renew/", {"email": "lost@example.com"})
        statuses.append(response.status_code)
        if response.status_code == 200:
            assert "If we know this address" in response.content.decode()
    assert statuses == [200] * 3 + [429] * 2  # 3 an hour for an address (tests/…/test_abuse_limits)
    assert "Too many requests" in response.content.decode()
    assert len(mail.outbox) == 3  # rate-limited
    fresh = re.search(r"/p/[^/\s]+/", mail.outbox[0].body).group(0)
    assert client.get(fresh).status_code == 200
    client.post("/p/renew/", {"email": "nobody@example.com"})
    assert len(mail.outbox) == 3  # unknown addresses get the same answer and no email


def test_double_opt_in_grants_consent_only_on_confirmation_and_once(
    client, topics, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/subscribe/",
            {
                "email": "New@Example.com",
                "topics": ["newsletter"],
                "form_token": form_token(client),
            },
        )
    assert "Check your inbox" in response.content.decode()
    from crm.models import Contact

    contact = Contact.objects.get(email="new@example.com")
    assert consent_current(contact=contact) is None
    link = re.search(r"/c/[^/\s]+/", mail.outbox[0].body).group(0)
    assert "Confirm my subscription" in client.get(link).content.decode()
    assert consent_current(contact=contact) is None  # a GET confirms nothing
    client.post(link)
    assert consent_current(contact=contact) == "granted"
    assert consent_current(contact=contact, topic="newsletter") == "granted"
    again = client.post(link).content.decode()
    assert "Already confirmed" in again
    assert sum(1 for t, s, _ in log(contact) if t == "all" and s == "granted") == 1


def test_subscribe_through_the_api(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/subscribe/",
            {"email": "apisub@example.com", "source": "checkout"},
            format="json",
        )
    assert response.status_code == 202
    assert mail.outbox[0].to == ["apisub@example.com"]
    assert api.post("/api/v1/subscribe/", {"email": "nope"}, format="json").status_code == 400


def test_japanese_contacts_get_japanese_pages(client, topics):
    contact = shopper("jp@example.com")
    contact.locale = "ja-JP"
    contact.save()
    page = client.get(f"/p/{preferences_token(contact.pk)}/").content.decode()
    assert 'lang="ja"' in page and "メール" in page


def test_a_topic_opt_out_stops_that_topics_mail_only(topics, run):
    from datetime import timedelta

    import time_machine

    from campaigns.models import Campaign, EmailTemplate, Message
    from campaigns.services.definitions import campaign_publish
    from crm.services.preferences import Where, preferences_update
    from tests.campaigns.conftest import T0, track

    offers = EmailTemplate.objects.create(
        name="offer", subject="Sale!", html_body="<p>Sale</p>", topic=topics[1]
    )
    news = EmailTemplate.objects.create(
        name="news", subject="News", html_body="<p>News</p>", topic=topics[0]
    )
    for template in (offers, news):
        campaign = Campaign.objects.create(
            name=template.name,
            trigger={"type": "event", "name": "Go"},
            steps=[{"id": "m", "type": "send_email", "config": {"template": template.name}}],
        )
        campaign_publish(campaign=campaign)
    with time_machine.travel(T0, tick=False) as clock:
        contact = shopper("topic@example.com")
        preferences_update(contact=contact, topics={"newsletter"}, where=Where(source="test"))
        track("topic@example.com", "Go", T0, "go")
        clock.shift(timedelta(seconds=10))
        run()
    assert [m.subject for m in mail.outbox] == ["News"]
    skipped = Message.objects.get(subject="Sale!")
    assert (skipped.status, skipped.error) == ("skipped", "unsubscribed from the topic 'offers'")
