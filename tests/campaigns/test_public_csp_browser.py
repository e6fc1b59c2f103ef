"""The public pages not walked by the other browser tests — the subscribe form, the
double opt-in confirmation, a bad link and its fresh-link form — work in Chromium under
the Content-Security-Policy, in English and in Japanese (`browser_page` fails the test on
any violation)."""

import re

import pytest
from django.core import mail

from crm.models import Contact
from crm.selectors import consent_current

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(("language", "confirm"), [("en", "Confirm my subscription"), ("ja", None)])
def test_subscribe_confirm_and_a_fresh_link_under_the_policy(
    live_server, browser_page, settings, language, confirm
):
    settings.KEEPERS_PUBLIC_URL = live_server.url
    page = browser_page
    page.set_extra_http_headers({"Accept-Language": language})

    page.goto(f"{live_server.url}/subscribe/")
    assert page.locator("html").get_attribute("lang") == language
    page.fill("#email", f"new-{language}@example.com")
    page.locator("button[type=submit]").click()
    page.wait_for_selector("[role=status]")

    link = re.search(r"/c/[^/\s]+/", mail.outbox[-1].body).group(0)
    page.goto(live_server.url + link)
    if confirm:
        assert page.locator("#confirm").inner_text() == confirm
    page.locator("#confirm").click()
    page.wait_for_load_state()
    contact = Contact.objects.get(email=f"new-{language}@example.com")
    assert consent_current(contact=contact) == "granted"

    page.goto(f"{live_server.url}/p/not-a-valid-link/")
    page.fill("#email", contact.email)
    page.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert page.url.endswith("/p/renew/")
