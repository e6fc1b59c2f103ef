"""A preview is what the engine sends: the same render, with the same context, for the
same contact and event (campaigns.services.templates)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from campaigns.models import Message
from campaigns.services.templates import email_preview, sample_event
from crm.models import Product
from tests.campaigns.conftest import T0, shopper, track

pytestmark = pytest.mark.django_db


def test_the_preview_after_the_last_cart_is_the_message_the_engine_queued(
    abandoned_cart, templates, run
):
    Product.objects.create(product_id="SKU-9", name="Teapot", price=30)
    with time_machine.travel(T0, tick=False) as clock:
        contact = shopper("same@example.com", first_name="Sol")
        # the item names only its id: the name comes from the catalog, in both renders
        track("same@example.com", "Checkout Started", T0, "co-1", products=[{"sku": "SKU-9"}])
        clock.shift(timedelta(seconds=10))
        run()
        clock.shift(timedelta(hours=1, minutes=1))
        run()
        sent = Message.objects.get(step_id="reminder")
        preview = email_preview(
            template=templates["cart-1"],
            contact=contact,
            event=sample_event(contact=contact, sample="cart"),
        )
    assert "Teapot" in sent.html
    assert (preview.subject, preview.html, preview.text) == (sent.subject, sent.html, sent.text)
