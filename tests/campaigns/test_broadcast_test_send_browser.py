"""A marketer sends a broadcast's test in headless Chromium after the contact's last cart,
picked in the form (no JSON, no event typed in): the test shows the cart's items."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from playwright.sync_api import expect

from campaigns.models import Broadcast, EmailTemplate
from crm import clock
from crm.models import Contact
from tests.campaigns.conftest import track
from tests.campaigns.test_broadcasts import audience

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_marketer_sends_a_broadcast_test_after_the_contact_s_last_cart(marketer_page):
    page = marketer_page
    template = EmailTemplate.objects.create(
        name="spring",
        subject="Spring for {{ first_name }}",
        html_body="{% for item in event.properties.products %}<p>{{ item.name }}</p>{% endfor %}",
    )
    broadcast = Broadcast.objects.create(
        name="Spring",
        template=template,
        segment=audience(1),
        send_date=clock.now().date() + dt.timedelta(days=7),
        send_time=dt.time(9),
    )
    contact = Contact.objects.get()
    track(contact.email, "Checkout Started", clock.now(), "co-1", products=[{"name": "Teapot"}])

    page.goto(f"{page.base}/admin/campaigns/broadcast/{broadcast.pk}/change/")
    page.get_by_role("link", name="Send a test").click()
    expect(page.get_by_label("Contact")).to_have_value(str(contact.pk))  # the audience's first
    page.get_by_label("Sample").select_option(label="Their last cart")
    page.get_by_label("Send to").fill("qa@example.com")
    page.get_by_role("button", name="Send the test").click()

    expect(page.locator(".messagelist .success")).to_contain_text(
        "Test sent to qa@example.com after the event “Checkout Started”"
    )
    (sent,) = mail.outbox
    assert sent.subject == "[TEST] Spring for C0"
    assert "Teapot" in sent.alternatives[0][0]
