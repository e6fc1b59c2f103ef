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
