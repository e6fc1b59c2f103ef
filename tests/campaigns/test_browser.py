"""The preference center in headless Chromium, opened from the link in a sent message."""

import os
import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services.definitions import campaign_publish
from crm.models import ConsentRecord, ContactPreference, Topic
from crm.selectors import consent_current
from tests.campaigns.conftest import shopper, track

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sent_link(kind: str) -> str:
    body = mail.outbox[-1].body
    return re.search(rf"https?://[^\s]+/{kind}/[^\s/]+/", body).group(0)


def test_preference_center_from_a_sent_message(live_server, browser_page, templates, run, tmp_path):
    Topic.objects.create(slug="newsletter", name="Monthly newsletter")
    Topic.objects.create(slug="offers", name="Offers and sales")
    campaign = Campaign.objects.create(
        name="Hello",
        trigger={"type": "event", "name": "Go"},
        steps=[{"id": "m", "type": "send_email", "config": {"template": "welcome"}}],
    )
    campaign_publish(campaign=campaign)
    start = timezone.now()
    with (
        override_settings(KEEPERS_PUBLIC_URL=live_server.url),
        time_machine.travel(start, tick=True) as clock,
    ):
        contact = shopper("browser@example.com")
        track("browser@example.com", "Go", start, "go")
        clock.shift(timedelta(seconds=10))
        run()
    page = browser_page
    # the footer's "Email preferences" link
    page.goto(sent_link("p"))
    assert page.locator("h1").inner_text() == "Email preferences"
    assert page.get_by_label("Offers and sales").is_checked()
    page.get_by_label("Offers and sales").uncheck()
    page.get_by_label("At most one email a week").check()
    page.get_by_role("button", name="Save my preferences").click()
    assert "Your preferences are saved." in page.locator("[role=status]").inner_text()
    assert consent_current(contact=contact, topic="offers") == "withdrawn"
    assert consent_current(contact=contact, topic="newsletter") == "granted"
    assert ContactPreference.objects.get(contact=contact).frequency == "weekly"
    # KEEPERS_SCREENSHOT_DIR=docs refreshes docs/preference-center.png
    shots = os.environ.get("KEEPERS_SCREENSHOT_DIR", str(tmp_path))
    page.screenshot(path=f"{shots}/preference-center.png", full_page=True)
    # keyboard only: tab to "unsubscribe from all" and press Enter
    page.locator("#unsubscribe-all").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#resubscribe")
    assert consent_current(contact=contact) == "withdrawn"
    log = list(
        ConsentRecord.objects.filter(contact=contact)
        .order_by("id")
        .values_list("topic", "status", "source")
    )
    assert log[1:] == [
        ("offers", "withdrawn", "preference center"),
        ("frequency:weekly", "granted", "preference center"),
        ("all", "withdrawn", "preference center"),
    ]

    # a tampered link: a friendly page that offers a fresh link
    page.goto(sent_link("p")[:-4] + "xx/")
    assert page.locator("h1").inner_text() == "This link does not work"
    page.get_by_label("Your email address").fill("browser@example.com")
    page.get_by_role("button", name="Email me a new link").click()
    assert "a fresh link is on its way" in page.locator("[role=status]").inner_text()


def test_unsubscribe_link_in_chromium_needs_one_click_to_confirm(
    live_server, browser_page, templates
):
    from crm.links import unsubscribe_token

    contact = shopper("unsub@example.com")
    page = browser_page
    page.goto(f"{live_server.url}/u/{unsubscribe_token(contact.pk)}/")
    assert consent_current(contact=contact) == "granted"  # opening the link changed nothing
    page.get_by_role("button", name="Yes, unsubscribe me").click()
    page.wait_for_selector("#resubscribe")
    assert consent_current(contact=contact) == "withdrawn"
