"""Staff open the metrics dashboard in headless Chromium: every chart is drawn, with data,
from the page alone (no request leaves the site: no CDN). With KEEPERS_SCREENSHOT=1 the
test also refreshes docs/dashboard.png, so ordinary runs leave the tree clean."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.utils import timezone

from crm.admin_dashboard import CHARTS
from crm.services.clv_fits import clv_fit
from tests.crm.test_dashboard import seed_shop

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


@pytest.fixture(autouse=True)
def _metrics_settings(settings):
    settings.KEEPERS_SHOP_TIME_ZONE = "UTC"
    settings.KEEPERS_BASE_CURRENCY = "USD"
    settings.KEEPERS_ACTIVE_WINDOW_DAYS = 365


def test_staff_see_every_chart_drawn_with_data(live_server, browser_page, django_user_model):
    # the real clock: the browser's session cookie must not expire in a frozen past; a few
    # hundred contacts, so the picture in docs/ looks like a shop
    seed_shop(timezone.now(), size=300)
    assert clv_fit().status == "ok"  # the headline's predicted CLV
    django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-for-tests")
    page = browser_page
    page.set_viewport_size({"width": 1440, "height": 900})
    site = urlparse(live_server.url).netloc
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda request: (
            elsewhere.append(request.url)
            if urlparse(request.url).netloc not in (site, "")
            else None
        ),
    )
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-for-tests")
    page.click("input[type=submit]")
    page.get_by_role("link", name="Dashboard").first.click()  # from the admin index
    page.wait_for_url("**/admin/metrics/")

    assert page.get_by_role("heading", name="Metrics").is_visible()
    headline = page.get_by_label("The period at a glance")
    assert headline.get_by_text("Predicted CLV, average, next 12 months").is_visible()
    for key in CHARTS:
        chart = page.locator(f"#chart-{key}")
        assert chart.get_attribute("data-has-data") == "true", key
        svg = chart.locator("svg.kc-svg")
        box = svg.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100, key
        marks = svg.locator(".kc-mark")
        assert marks.count() > 0, key
        first = marks.first.bounding_box()
        assert first and first["width"] > 0 and first["height"] > 0, key
        assert svg.get_attribute("role") == "img"
        assert chart.get_by_role("link", name="Download CSV").count() == 1
    # a chart's numbers open under it
    cohorts = page.locator("#chart-cohorts")
    cohorts.get_by_text("Show the numbers").click()
    assert cohorts.locator("table tbody tr").first.is_visible()
    # the presets move the period and keep the page whole
    page.get_by_role("link", name="Last 3 months").click()
    page.wait_for_url("**/admin/metrics/?months=3")
    assert page.locator("#chart-retention svg circle.kc-mark").count() >= 3
    assert not elsewhere, f"requests left the site: {elsewhere}"
    assert not errors

    if os.environ.get("KEEPERS_SCREENSHOT") == "1":
        page.get_by_role("link", name="Last 12 months").click()
        page.wait_for_url("**/admin/metrics/?months=12")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
