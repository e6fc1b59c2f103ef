"""The email blocks: each compiles with mrml inside `mjml_document`, and the compiled HTML
renders with Django's template engine for a contact, with the data each block shows."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import mrml
import pytest
from django.conf import settings
from django.template import engines
from django.utils import translation

from campaigns.email_blocks import FOOTER_CLASS, blocks, merge_tags, mjml_document
from campaigns.mjml import mjml_compile
from campaigns.models import Survey
from campaigns.services.rendering import contact_links, event_context
from crm.models import Event, Product, ProductSales
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

UNRESOLVED = re.compile(r"\{\{|\{%|\{#")


def demo_context(contact, event=None, **extra) -> dict:
    """What rendering.email_render gives a template, plus the grant step's `results`,
    loyalty's `expiring` and a shop logo (the lead adds KEEPERS_SHOP_LOGO_URL)."""
    return {
        "contact": contact,
        "first_name": contact.first_name,
        "attributes": contact.attributes,
        "stage": contact.stage,
        "event": event_context(event),
        "shop": {
            "name": settings.KEEPERS_SHOP_NAME,
            "address": settings.KEEPERS_SHOP_ADDRESS,
            "url": settings.KEEPERS_SHOP_URL,
            "logo_url": "https://shop.example.com/logo.png",
        },
        **contact_links(contact),
        "results": {"coupon": "CART-7QX2", "coupon_expires_at": "2026-03-09T23:59:00+00:00"},
        "expiring": {
            "amount": "250",
            "unit": "points",
            "is_points": True,
            "expires_at": dt.datetime(2026, 3, 9, 12, tzinfo=dt.UTC),
            "balance": "900",
        },
        **extra,
    }


def compile_and_render(mjml: str, context: dict) -> str:
    html = mjml_compile(mjml)
    return engines["django"].from_string(html).render(context)


@pytest.fixture
def shop(db):
    """A contact with a cart of two catalog products, bestsellers, and the NPS survey."""
    names = ["Huila Washed", "Sidamo Natural", "Pour-over kit", "Hand grinder", "Filter papers"]
    for n, name in enumerate(names, start=1):
        product = Product.objects.create(
            product_id=f"SKU-{n}",
            name=name,
            price=Decimal("14.50"),
            currency="USD",
            in_stock=True,
            url=f"https://shop.example.com/p/SKU-{n}",
            image_url=f"https://shop.example.com/img/SKU-{n}.jpg",
        )
        # the bestsellers the product grid falls back on
        ProductSales.objects.create(
            product=product, units=10 * n, orders=5 * n, refreshed_at=dt.datetime.now(dt.UTC)
        )
    Survey.objects.create(name="NPS", kind=Survey.Kind.NPS, question="Recommend us?")
    contact = ContactFactory(first_name="Ada", email="ada@example.com")
    event = Event.objects.create(
        contact=contact,
        name="Checkout Started",
        occurred_at=dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC),
        received_at=dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC),
        properties={
            "currency": "USD",
            "items": [{"product_id": "SKU-1", "quantity": 2}, {"product_id": "SKU-2"}],
        },
    )
    return contact, event


@pytest.mark.parametrize("language", ["en", "ja"])
def test_every_block_compiles_and_renders_with_nothing_left_unresolved(shop, language):
    contact, event = shop
    with translation.override(language):
        listed = blocks()
    assert len({b["id"] for b in listed}) == len(listed) == 10
    for block in listed:
        assert block["label"] and block["category"]
        assert re.match(r"\s*<mj-(section|wrapper)\b", block["mjml"]), block["id"]
        html = compile_and_render(
            mjml_document(block["mjml"], title="Hi {{ first_name }}", preheader="For you"),
            demo_context(contact, event),
        )
        assert not UNRESOLVED.search(html), block["id"]


def test_blocks_show_the_data_they_are_for(shop):
    contact, event = shop
    by_id = {b["id"]: b["mjml"] for b in blocks()}
    context = demo_context(contact, event)

    def render(block_id: str) -> str:
        return compile_and_render(mjml_document(by_id[block_id]), context)

    assert 'src="https://shop.example.com/logo.png"' in render("keepers-header")
    no_logo = demo_context(contact, event)
    no_logo["shop"].pop("logo_url")
    header = compile_and_render(mjml_document(by_id["keepers-header"]), no_logo)
    assert "logo.png" not in header and settings.KEEPERS_SHOP_NAME in header
    items = render("keepers-items")
    assert "Huila Washed" in items and "Sidamo Natural" in items and "SKU-1.jpg" in items
    assert render("keepers-products").count('href="https://shop.example.com/p/SKU-') >= 3
    assert "CART-7QX2" in render("keepers-coupon") and "2026-03-09" in render("keepers-coupon")
    balance = render("keepers-balance")
    assert "250" in balance and "9 March 2026" in balance and "900" in balance
    assert "/s/" in render("keepers-survey") or "survey" in render("keepers-survey")
    footer = render("keepers-footer")
    assert context["unsubscribe_url"] in footer and context["preferences_url"] in footer
    assert settings.KEEPERS_SHOP_ADDRESS in footer


def test_money_and_points_are_written_as_the_language_writes_them(shop):
    contact, event = shop
    credit = {
        "amount": "25.00",
        "unit": "USD",
        "is_points": False,
        "expires_at": dt.datetime(2026, 3, 9, 12, tzinfo=dt.UTC),
        "balance": "40.00",
    }
    with translation.override("ja"):
        block = next(b for b in blocks() if b["id"] == "keepers-balance")["mjml"]
        points = compile_and_render(mjml_document(block), demo_context(contact, event))
        money = compile_and_render(
            mjml_document(block), demo_context(contact, event, expiring=credit)
        )
        items = next(b for b in blocks() if b["id"] == "keepers-items")["mjml"]
        cart = compile_and_render(mjml_document(items), demo_context(contact, event))
    assert "900ポイント" in points and "2026年3月9日" in points
    assert "$25.00" in money and "$40.00" in money and "ストアクレジット" in money
    assert "$14.50" in cart and "数量：2" in cart


def test_the_footer_is_marked_for_the_editor():
    footer = next(b for b in blocks() if b["id"] == "keepers-footer")
    assert footer["required_for"] == ["marketing"]
    assert f'css-class="{FOOTER_CLASS}"' in footer["mjml"]
    assert "{{ unsubscribe_url }}" in footer["mjml"] and "{{ preferences_url }}" in footer["mjml"]


def test_a_block_without_its_data_renders_empty_not_broken(shop):
    contact, _ = shop
    context = demo_context(contact, None, results={}, expiring=None)
    for block_id in ("keepers-items", "keepers-coupon", "keepers-balance"):
        block = next(b for b in blocks() if b["id"] == block_id)
        html = compile_and_render(mjml_document(block["mjml"]), context)
        assert not UNRESOLVED.search(html)
        assert "CART-" not in html and "Your cart" not in html and "Expiring on" not in html


def test_merge_tags_are_django_variables_the_context_has(shop):
    contact, event = shop
    context = demo_context(contact, event)
    with translation.override("ja"):
        tags = merge_tags()
    assert {t["group"] for t in tags} >= {"連絡先", "ショップ"}
    for tag in tags:
        assert re.fullmatch(r"\{\{ [\w.|:']+ \}\}", tag["value"]), tag
        engines["django"].from_string(tag["value"]).render(context)  # valid syntax
    values = {t["value"] for t in tags}
    for name in ("first_name", "shop.name", "unsubscribe_url", "preferences_url"):
        assert "{{ " + name + " }}" in values


def test_the_document_carries_the_preview_title_and_language():
    html = mrml.to_html(
        mjml_document(
            "", title="Hello {{ first_name|default:'friend' }}", preheader="A & B", lang="ja"
        )
    ).content
    assert "<title>Hello {{ first_name|default:'friend' }}</title>" in html
    assert "A &amp; B" in html and 'lang="ja"' in html
