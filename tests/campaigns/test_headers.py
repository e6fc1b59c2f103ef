"""Headers: every page carries a Content-Security-Policy (django-csp) without
'unsafe-inline' for scripts; the customer pages behind signed links (they show the
address) are never stored by a browser or proxy and never indexed. That the pages still
work under the policy is shown in Chromium by every browser test (tests/conftest.py's
`browser_page` fails a test on any CSP violation)."""

import re

import pytest
from django.urls import reverse

from campaigns.models import Survey
from campaigns.services.surveys import survey_link
from crm.links import preferences_token, unsubscribe_token
from tests.campaigns.conftest import shopper

pytestmark = pytest.mark.django_db


def directives(response) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    return {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


def signed_pages(contact) -> dict[str, str]:
    survey = Survey.objects.create(name="NPS", kind="nps", question="Recommend us?")
    return {
        "preference centre": f"/p/{preferences_token(contact.pk)}/",
        "unsubscribe": f"/u/{unsubscribe_token(contact.pk)}/",
        "referral page": f"/p/{preferences_token(contact.pk)}/referral/",
        "survey": "/s/" + survey_link(survey, contact, 9, "r1").rsplit("/s/", 1)[1],
        "fresh link": "/p/renew/",
        "bad link": "/p/not-a-valid-token/",
    }


def test_signed_customer_pages_are_not_stored_and_not_indexed(client):
    contact = shopper("ada@example.com")

    for name, url in signed_pages(contact).items():
        response = client.get(url)

        assert response.status_code in (200, 404), (name, response.status_code)
        cache_control = {part.strip() for part in response.headers["Cache-Control"].split(",")}
        assert {"no-store", "private"} <= cache_control, (name, cache_control)
        assert "noindex" in response.headers["X-Robots-Tag"], name
        assert re.search(rb'<meta name="robots" content="noindex', response.content), name


def test_a_page_that_shows_the_address_stays_out_of_caches_after_a_post(client):
    contact = shopper("bo@example.com")
    url = f"/p/{preferences_token(contact.pk)}/"

    response = client.post(url, {"action": "save", "topics": [], "frequency": "everything"})

    assert b"bo@example.com" in response.content
    assert "no-store" in response.headers["Cache-Control"]


@pytest.mark.parametrize("url", ["/subscribe/", "/p/renew/", "/admin/login/"])
def test_pages_carry_a_strict_policy(client, url):
    response = client.get(url)

    policy = directives(response)
    assert policy["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-inline'" not in policy["style-src"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]


def test_a_page_with_an_inline_style_block_gets_its_nonce(client):
    response = client.get("/p/renew/")

    nonce = re.search(rb'<style nonce="([^"]+)">', response.content).group(1).decode()
    assert f"'nonce-{nonce}'" in directives(response)["style-src"]
    assert b'style="' not in response.content


def test_the_staff_pages_carry_the_policy(staff_client):
    response = staff_client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert "'unsafe-inline'" not in directives(response)["script-src"]


def test_the_email_preview_alone_lets_its_iframe_show_an_email(staff_client, templates):
    # the sandboxed srcdoc iframe inherits the page's policy; emails are all inline styles
    template = templates["cart-1"]
    contact = shopper("pia@example.com", first_name="Pia")

    response = staff_client.get(
        f"/admin/campaigns/emailtemplate/{template.pk}/preview/", {"contact": contact.pk}
    )

    policy = directives(response)
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    assert "https:" in policy["img-src"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert b"<iframe" in response.content and b"sandbox " in response.content
