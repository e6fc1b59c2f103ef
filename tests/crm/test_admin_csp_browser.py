"""Every staff page works under the Content-Security-Policy: with the demo shop loaded, a
superuser opens each registered model's pages and each custom admin view in headless
Chromium (changelist, add, an object's change, history and delete pages, the views each
ModelAdmin adds: the admin crawl's URLs, on its data) and `browser_page` fails the test
on any CSP violation; a page's own script errors fail it too."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from tests.test_admin_crawl import all_urls, crawl_rows

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def admin_pages() -> list[str]:
    """The admin crawl's URLs (tests/test_admin_crawl.py: each model's views with a real
    object, each custom view), GET-able ones."""
    return sorted({url.path for url in all_urls() if url.kind != "autocomplete"})


def test_every_admin_page_works_under_the_policy(live_server, browser_page, django_user_model):
    call_command("demo", contacts=40, url=live_server.url, verbosity=0)
    crawl_rows()
    staff = django_user_model.objects.create_superuser("csp", "csp@example.com", "pw")
    client = Client(raise_request_exception=False)
    client.force_login(staff)
    page = browser_page
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))

    visited = []
    for url in admin_pages():
        if url.endswith("/logout/"):
            continue
        # only HTML pages go to the browser (not CSV downloads, a POST-only view's 405;
        # 500s are the admin crawl's business, tests/crm for permissions)
        answer = client.get(url)
        if answer.status_code != 200 or "text/html" not in answer.headers["Content-Type"]:
            continue
        page.goto(live_server.url + url)
        visited.append(url)

    assert not errors, "\n".join(errors)
    assert len(visited) > 60  # it really walked the admin
