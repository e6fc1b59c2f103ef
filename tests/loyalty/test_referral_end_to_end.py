"""Issue 7's acceptance, end to end: a friend opens the share link in headless Chromium,
signs up, and orders above the minimum through the API; once the return window has
closed (the shared clock moved for every process), the real worker grants both rewards,
the "Referral rewarded" campaign emails both sides, and the referrer's page — opened from
the link in that email — shows the friend as rewarded and the store credit."""

import datetime as dt
import os
import re
import time
from decimal import Decimal

import httpx
import pytest
from celery import Celery
from django.db import connections
from playwright.sync_api import expect

from campaigns.models import Message
from campaigns.playbooks import playbooks_install
from crm.services.api_keys import api_key_create
from crm.services.consent import consent_record
from crm.services.contacts import contact_create
from loyalty.models import Referral
from loyalty.services.ledger import ledger_balances
from loyalty.services.referrals import referral_code_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.browser]

RULES = {  # the same for the live server (this process) and the worker
    "KEEPERS_BASE_CURRENCY": "EUR",
    "KEEPERS_REFERRAL_MIN_ORDER": "30",
    "KEEPERS_REFERRAL_RETURN_DAYS": "30",
    "KEEPERS_REFERRAL_REFERRER_REWARD": "credit:10:EUR:90",
    "KEEPERS_REFERRAL_FRIEND_REWARD": "credit:10:EUR:30",
}


@pytest.fixture
def chromium(browser_page):
    """browser_page, leaving no database connection behind. While Playwright runs, the
    ORM in this thread works on another connection than outside it (Django's connections
    are per async context, and Playwright's sync API runs an event loop here); the keepers
    fixture's teardown, outside, terminates that one as a stray, and the next test using
    browser_page would inherit it dead. Closing it here, inside, avoids that."""
    yield browser_page
    connections.close_all()


def send_task(keepers, name: str) -> None:
    """keepers.send(), without making its Celery app the process's current one (which
    would leave later tests' tasks going to Redis instead of running eagerly)."""
    with Celery(broker=keepers.broker, set_as_current=False) as app:
        app.send_task(name, queue=keepers.queue)


def rewarded_subjects(keepers) -> dict[str, list[str]]:
    sent: dict[str, list[str]] = {}
    for message in keepers.outbox():
        if message["subject"].startswith("You earned"):
            sent.setdefault(message["to"][0], []).append(message["subject"])
    return sent


def test_a_referred_friend_orders_and_both_sides_are_rewarded(
    keepers, live_server, chromium, settings, tmp_path
):
    started = time.monotonic()
    for name, value in RULES.items():
        keepers.env[name] = value
    settings.KEEPERS_BASE_CURRENCY = RULES["KEEPERS_BASE_CURRENCY"]
    settings.KEEPERS_REFERRAL_MIN_ORDER = Decimal(RULES["KEEPERS_REFERRAL_MIN_ORDER"])
    settings.KEEPERS_REFERRAL_RETURN_DAYS = int(RULES["KEEPERS_REFERRAL_RETURN_DAYS"])
    settings.KEEPERS_REFERRAL_REFERRER_REWARD = RULES["KEEPERS_REFERRAL_REFERRER_REWARD"]
    settings.KEEPERS_REFERRAL_FRIEND_REWARD = RULES["KEEPERS_REFERRAL_FRIEND_REWARD"]
    settings.KEEPERS_PUBLIC_URL = live_server.url
    keepers.env["KEEPERS_PUBLIC_URL"] = live_server.url  # the links in the worker's emails

    # given: the playbooks, and Ada, a subscriber with her share link
    playbooks_install()
    ada = contact_create(email="ada@example.com", first_name="Ada")
    consent_record(contact=ada, status="granted")
    code = referral_code_for(ada).code
    shop_key = api_key_create(name="shop", scope="write")[1]
    keepers.worker()
    keepers.beat()

    # when: Bo opens the link on his phone and signs up
    page = chromium
    page.goto(f"{live_server.url}/r/{code}")  # as typed: the slash is added
    assert page.locator("h1").inner_text() == "Ada invited you to Keepers Demo Shop"
    assert "10.00 EUR store credit" in page.locator(".gift").inner_text()
    page.get_by_label("Your email address").fill("bo@example.com")
    page.get_by_label("Your first name (optional)").fill("Bo")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_selector("#shop-link")
    assert page.locator("h1").inner_text() == "Welcome, Bo!"
    cookie = {c["name"]: c for c in page.context.cookies()}["keepers_ref"]
    assert cookie["value"] == code and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    referral = Referral.objects.select_related("friend").get()
    assert (referral.friend.email, referral.channel, referral.status) == (
        "bo@example.com",
        "form",
        "signed_up",
    )

    # and his first order, above the minimum, reaches Keepers through the shop's API
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {shop_key}"}, timeout=30
    ) as api:
        response = api.post(
            "/api/v1/orders/",
            json={
                "external_id": "shop-1001",
                "email": "bo@example.com",
                "total": "45.00",
                "currency": "EUR",
            },
        )
    assert response.status_code in (200, 201), response.text
    referral.refresh_from_db()
    assert referral.status == "pending"

    # then: once the return window has closed, the worker rewards both sides
    keepers.advance_clock(31 * 86400)
    send_task(keepers, "loyalty.tasks.referrals_reward_due")
    keepers.wait_for(
        lambda: set(rewarded_subjects(keepers)) == {"ada@example.com", "bo@example.com"},
        timeout=40,
        what='both "referral rewarded" emails',
    )
    assert rewarded_subjects(keepers) == {
        "ada@example.com": ["You earned 10.00 EUR store credit"],
        "bo@example.com": ["You earned 10.00 EUR store credit"],
    }
    referral.refresh_from_db()
    assert referral.status == "rewarded"
    for contact in (ada, referral.friend):
        assert ledger_balances(contact)["EUR"].available == Decimal("10")

    # and Ada's page, from the link in her email, shows it
    email = Message.objects.get(to_email="ada@example.com", subject__startswith="You earned")
    link = re.search(r"https?://[^\s\"'<>]+/p/[^/\s\"'<>]+/referral/", email.html).group(0)
    assert link.startswith(live_server.url)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(link)
    assert page.locator("h1").inner_text() == "Invite friends"
    friend = page.locator(".friends li")
    assert friend.count() == 1
    assert friend.get_attribute("data-status") == "rewarded"
    assert "Bo" in friend.inner_text() and "Rewarded" in friend.inner_text()
    credit = page.locator("#store-credit").inner_text()
    expiry = (referral.rewarded_at + dt.timedelta(days=90)).strftime("%Y-%m-%d")
    assert "10.00 EUR" in credit and f"to use by {expiry}" in credit
    assert "10.00 EUR store credit" in page.locator("#rewards-earned").inner_text()
    page.get_by_role("button", name="Copy link").click()
    # (a web-first assertion: a string wait_for_function is eval'd in the page, which the
    # page's Content-Security-Policy rightly refuses)
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == f"{live_server.url}/r/{code}/"
    # KEEPERS_SCREENSHOT_DIR=docs keeps a picture of the page
    shots = os.environ.get("KEEPERS_SCREENSHOT_DIR", str(tmp_path))
    page.screenshot(path=f"{shots}/referral-page.png", full_page=True)
    print(f"referral end to end: {time.monotonic() - started:.1f} s")
