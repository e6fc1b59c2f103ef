"""Every staff page works under the Content-Security-Policy: with the demo shop loaded, a
superuser opens each registered model's pages and each custom admin view in headless
Chromium (changelist, add, an object's change, history and delete pages, the views each
ModelAdmin adds) and `browser_page` fails the test on any CSP violation; a page's own
script errors fail it too."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")


def admin_pages() -> list[str]:
    """GET-able admin URLs: each model's own views, with its first object where a view
    takes one (views that need another kind of argument are left out)."""
    urls = ["/admin/"]
    for model, model_admin in admin.site._registry.items():
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        first = model._default_manager.order_by("pk").first()
        for pattern in model_admin.get_urls():
            if not isinstance(pattern, URLPattern):
                continue
            route = str(pattern.pattern)
            if route.startswith("^") or route == "<path:object_id>/":
                continue  # a regex (none here) or the old-URL redirect
            names = PARAMETER.findall(route)
            if not names:
                urls.append(base + route)
            elif first is not None and len(names) == 1 and names[0] in ("object_id", "pk"):
                urls.append(base + PARAMETER.sub(str(first.pk), route))
    for pattern in admin.site.get_urls():  # the site's own views (the dashboard…)
        route = str(pattern.pattern)
        if isinstance(pattern, URLPattern) and not PARAMETER.search(route):
            urls.append("/admin/" + route)
    return sorted(set(urls))


def test_every_admin_page_works_under_the_policy(live_server, browser_page, django_user_model):
    call_command("demo", contacts=40, url=live_server.url, verbosity=0)
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
