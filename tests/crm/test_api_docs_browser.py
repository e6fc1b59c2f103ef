"""The API docs (Swagger UI, served from our static files) work under the
Content-Security-Policy: `browser_page` fails the test on any violation."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_api_docs_render_under_the_policy(live_server, browser_page):
    page = browser_page

    page.goto(f"{live_server.url}/api/docs/")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Keepers API")
    expect(page.locator(".opblock").first).to_be_visible()
