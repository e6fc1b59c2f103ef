"""The template admin's preview with a sample event or typed properties (the same path as
the API's preview and test send), and the subject-length warning measured on the subject
a contact reads."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import override_settings

from campaigns.models import EmailTemplate
from tests.campaigns.conftest import T0, shopper, template_form, track

pytestmark = pytest.mark.django_db


@pytest.fixture
def cart_template(db):
    cache.clear()
    return EmailTemplate.objects.create(
        name="cart-items",
        subject="Your cart, {{ first_name }}",
        html_body="{% for item in event.properties.items %}<p>{{ item.name }}</p>{% endfor %}"
        "{% if event.properties.coupon %}<p>Code {{ event.properties.coupon }}</p>{% endif %}",
    )


def _url(template: EmailTemplate) -> str:
    return f"/admin/campaigns/emailtemplate/{template.pk}/preview/"


def test_the_preview_renders_after_the_contacts_last_cart(staff_client, cart_template):
    contact = shopper("cart@example.com", first_name="Pia")
    track("cart@example.com", "Checkout Started", T0, "c1", products=[{"name": "Teapot"}])
    plain = staff_client.get(_url(cart_template), {"contact": contact.pk}).content.decode()
    assert "Teapot" not in plain and "Rendered without an event" in plain
    no_order = staff_client.get(_url(cart_template), {"contact": contact.pk, "sample": "order"})
    assert "This contact has no such event" in no_order.content.decode()
    page = staff_client.get(
        _url(cart_template), {"contact": contact.pk, "sample": "cart"}
    ).content.decode()
    assert "Teapot" in page and "Your cart, Pia" in page
    assert "Rendered after the event “Checkout Started”" in page


def test_typed_properties_and_a_test_send_with_them(staff_client, cart_template):
    contact = shopper("typed@example.com")
    form = {"contact": contact.pk, "event_name": "Coupon Granted", "properties": "coupon = SAVE5"}
    assert "Code SAVE5" in staff_client.get(_url(cart_template), form).content.decode()
    bad = staff_client.get(_url(cart_template), {**form, "properties": "no equals sign"})
    assert "Line 1 is not" in bad.content.decode()
    staff_client.post(_url(cart_template), {**form, "send_test_to": "me@example.com"})
    assert mail.outbox[-1].to == ["me@example.com"] and "Code SAVE5" in mail.outbox[-1].body
    with override_settings(KEEPERS_RATE_TEST_SEND="1/hour"):
        cache.clear()
        staff_client.post(_url(cart_template), {**form, "send_test_to": "me@example.com"})
        limited = staff_client.post(_url(cart_template), {**form, "send_test_to": "me@example.com"})
    assert "Too many requests" in limited.content.decode()
    assert len(mail.outbox) == 2


def test_the_subject_warning_measures_the_rendered_subject(staff_client):
    # 35 characters of source, 16 as read: the tags are not what a phone shows
    short = EmailTemplate.objects.create(
        name="short", subject="{{ first_name }}, {% if 1 %}hello{% endif %}", html_body="x"
    )
    listing = staff_client.get("/admin/campaigns/emailtemplate/").content.decode()
    assert len(short.subject) > 30 and "⚠" not in listing
    page = staff_client.get(_url(short)).content.decode()
    assert "mobile mail clients cut it" not in page
    response = staff_client.post(
        f"/admin/campaigns/emailtemplate/{short.pk}/change/",
        template_form(
            name="short",
            subject="{{ first_name }}, this subject is too long for a phone",
            html_body="x",
        ),
        follow=True,
    )
    assert "characters long for a sample contact" in response.content.decode()
