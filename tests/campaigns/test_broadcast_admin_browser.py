"""A sending broadcast's page in headless Chromium: the progress numbers update by
themselves while the next wave goes out, without a reload."""

import datetime as dt

import pytest
import time_machine
from playwright.sync_api import expect

from campaigns.models import Broadcast, EmailTemplate
from campaigns.services.broadcasts import broadcast_schedule, broadcasts_tick
from tests.campaigns.test_broadcast_admin import DAY, NEW_YORK_NINE, PARIS_NINE, audience

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def shop_in_paris(settings):
    settings.KEEPERS_SHOP_TIME_ZONE = "Europe/Paris"


def tick(at: dt.datetime) -> None:
    """One beat tick at `at`. Celery is eager and nothing wraps this test in a transaction,
    so each batch's sends run as it commits."""
    with time_machine.travel(at, tick=False):
        broadcasts_tick()


def test_the_progress_panel_follows_the_sends_without_a_reload(
    live_server, browser_page, django_user_model
):
    django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-for-tests")
    newsletter = EmailTemplate.objects.create(
        name="newsletter", subject="March news", html_body="<p>Hello {{ first_name }}</p>"
    )
    segment = audience(6, ("Europe/Paris", "America/New_York"))
    broadcast = Broadcast.objects.create(
        name="March news",
        template=newsletter,
        segment=segment,
        send_date=DAY,
        send_time=dt.time(9),
        timing=Broadcast.Timing.LOCAL,
    )
    broadcast_schedule(broadcast=broadcast, now=dt.datetime(2026, 3, 9, tzinfo=dt.UTC))
    tick(PARIS_NINE)  # Paris's three go out; New York's three wait for 13:00Z

    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(
        f"{live_server.url}/admin/login/?next=/admin/campaigns/broadcast/{broadcast.pk}/change/"
    )
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-for-tests")
    page.click("input[type=submit]")
    progress = page.locator('#kp-progress [data-kp="progress"]')
    expect(progress).to_have_text("3 / 6 sent")
    expect(page.locator('#kp-progress [data-kp="remaining"]')).to_have_text("3")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    bar = page.locator("#kp-progress [role=progressbar]")
    expect(bar).to_have_attribute("aria-valuenow", "50")
    page.evaluate("window.kpSamePage = true")  # gone if the page reloads

    tick(NEW_YORK_NINE)  # New York's wave goes out

    expect(progress).to_have_text("6 / 6 sent", timeout=10_000)
    expect(page.locator('#kp-progress [data-kp="remaining"]')).to_have_text("0")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    assert page.evaluate("window.kpSamePage") is True

    tick(NEW_YORK_NINE + dt.timedelta(minutes=1))  # nobody left: sent
    expect(page.locator('#kp-status [data-kp="status"]')).to_have_text("Sent", timeout=10_000)
    expect(page.locator("[data-kp-changed]")).to_be_visible()
    expect(page.get_by_role("button", name="Pause")).to_be_hidden()  # not for a sent one
    assert page.evaluate("window.kpSamePage") is True
