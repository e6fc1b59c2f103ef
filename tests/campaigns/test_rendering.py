"""Rendering: the plain-text part derived from the HTML body."""

import pytest

from campaigns.models import EmailTemplate
from campaigns.services.rendering import email_render
from tests.campaigns.conftest import shopper

pytestmark = pytest.mark.django_db

HTML = """
<style>h1 { font-size: 24px; color: #b00; }</style>
<!-- a note for the designer -->
<h1>Your cart, {{ contact.first_name }}</h1>
<p>Still thinking about the <strong>Blue&nbsp;mug</strong> &amp; saucer?</p>
<p><a href="https://shop.example/cart?a=1&amp;b=2" style="color: red">Back to <em>your cart</em></a></p>
<script>track("open")</script>
<table><tr><td>Mug</td><td>12.00</td></tr></table>
"""


def test_the_text_part_keeps_what_a_reader_sees_and_drops_styles_scripts_and_comments():
    template = EmailTemplate.objects.create(
        name="cart", subject="Your cart", html_body=HTML, category="marketing"
    )

    text = email_render(template=template, contact=shopper("ada@example.com", "Ada")).text

    assert text.startswith("Your cart, Ada\n\nStill thinking about the Blue mug & saucer?")
    assert "Back to your cart (https://shop.example/cart?a=1&b=2)" in text
    assert "Mug 12.00" in text
    for hidden in ("font-size", "designer", "track(", "<", "&amp;"):
        assert hidden not in text
    assert "Unsubscribe: " in text  # the footer of a marketing message


# --- text stays text: subject, preheader and text part are not HTML -----------------------
NAMES = ["O'Brien", '"Zoë & Co"', "<Ann>"]


def _enrolled(template: EmailTemplate, names: list[str]):
    """Each name a contact enrolled in a one-step campaign that sends `template`, due now."""
    from django.utils import timezone

    from campaigns.models import Campaign, Enrollment
    from campaigns.services.definitions import campaign_publish

    campaign = Campaign.objects.create(
        name="Names",
        trigger={"type": "manual"},
        steps=[{"id": "hi", "type": "send_email", "config": {"template": template.name}}],
    )
    version = campaign_publish(campaign=campaign)
    now = timezone.now()
    for n, name in enumerate(names):
        contact = shopper(f"name{n}@example.com", name)
        Enrollment.objects.create(
            campaign=campaign,
            version=version,
            contact=contact,
            current_step="hi",
            next_run_at=now,
            entered_at=now,
            trigger_key=f"names-{n}",
        )


def test_names_arrive_as_written_in_subject_preheader_and_text_and_escaped_in_html(run):
    from django.core import mail

    template = EmailTemplate.objects.create(
        name="names",
        subject="Hello {{ first_name }}",
        preheader="For {{ first_name }} only",
        html_body="<p>Dear {{ first_name }}</p>",
        text_body="Dear {{ first_name }}, see {{ shop.url }}",
        category="marketing",
    )
    _enrolled(template, NAMES)

    run()  # the real send path: engine tick, messages_send, Anymail's test backend

    by_to = {m.to[0]: m for m in mail.outbox}
    assert len(by_to) == 3
    for n, name in enumerate(NAMES):
        email = by_to[f"name{n}@example.com"]
        assert email.subject == f"Hello {name}"
        assert email.body.startswith(f"Dear {name}, see ")
        assert "&#x27;" not in email.body and "&amp;" not in email.body
    # in the HTML part the same names are escaped, as HTML must be
    html = by_to["name2@example.com"].alternatives[0][0]
    assert "Dear &lt;Ann&gt;" in html and "<Ann>" not in html
    # the preheader (the inbox's preview line) is escaped once, by the layout, not twice
    assert "For &lt;Ann&gt; only" in html
    obrien = by_to["name0@example.com"].alternatives[0][0]
    assert "&amp;#x27;" not in obrien and "Dear O" in obrien
    assert "&quot;Zoë &amp; Co&quot;" in by_to["name1@example.com"].alternatives[0][0] or (
        '"Zoë &amp; Co"' in by_to["name1@example.com"].alternatives[0][0]
    )


def test_a_text_part_derived_from_html_keeps_names_and_single_quoted_links():
    template = EmailTemplate.objects.create(
        name="derived",
        subject="Hi",
        html_body="<p>Dear {{ first_name }}</p><p><a href='https://shop.example/?a=1&amp;b=2'>Shop</a></p>",
        category="transactional",
    )

    text = email_render(template=template, contact=shopper("d@example.com", "O'Brien")).text

    assert text.startswith("Dear O'Brien\nShop (https://shop.example/?a=1&b=2)")


def test_a_subject_from_a_contacts_data_cannot_inject_headers(run):
    from django.core import mail

    template = EmailTemplate.objects.create(
        name="inject", subject="Hi {{ first_name }}", html_body="<p>x</p>", category="marketing"
    )
    _enrolled(template, ["Eve\r\nBcc: victim@example.com", "Mal\u2028lory\nX-Evil: 1"])

    run()

    assert len(mail.outbox) == 2
    for email in mail.outbox:
        assert "\r" not in email.subject and "\n" not in email.subject
        assert "\u2028" not in email.subject
        message = email.message()
        assert message["Bcc"] is None and message["X-Evil"] is None
    assert {m.subject for m in mail.outbox} == {
        "Hi Eve Bcc: victim@example.com",
        "Hi Mal lory X-Evil: 1",
    }


def test_dates_read_in_the_contacts_own_time_zone():
    """An expiry at 20:00 UTC on 1 March is 05:00 on 2 March for a customer in Tokyo: the
    email says the day they will see it go."""
    import datetime as dt

    template = EmailTemplate.objects.create(
        name="dated",
        subject="Expires {{ when|date:'Y-m-d' }}",
        html_body="<p>{{ when|date:'Y-m-d H:i' }}</p>",
        category="transactional",
    )
    when = dt.datetime(2026, 3, 1, 20, 0, tzinfo=dt.UTC)
    tokyo = shopper("t@example.com", "Aiko")
    tokyo.timezone = "Asia/Tokyo"
    paris = shopper("p@example.com", "Zoë")
    paris.timezone = "Europe/Paris"

    seen = email_render(template=template, contact=tokyo, extra={"when": when})
    assert seen.subject == "Expires 2026-03-02" and "2026-03-02 05:00" in seen.html
    assert (
        "2026-03-01 21:00"
        in email_render(template=template, contact=paris, extra={"when": when}).html
    )
