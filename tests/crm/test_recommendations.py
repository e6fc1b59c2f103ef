"""Recommendations: frequently bought together on a hand-made shop, the exclusions (bought,
out of stock, in the cart), the fallbacks, the query count, the template tag in a rendered
email and the staff preview."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models import EmailTemplate
from campaigns.services.rendering import email_render
from crm.models import (
    Contact,
    Order,
    OrderLine,
    OrderStatus,
    Product,
    ProductAffinity,
    ProductSales,
)
from crm.services.recommendations import (
    Recommender,
    recommendations_for,
    recommendations_refresh,
)
from tests.factories import ContactFactory, EventFactory, OrderFactory

pytestmark = pytest.mark.django_db


def order(contact: Contact, *products: Product, status: str = OrderStatus.PLACED) -> Order:
    placed = OrderFactory(contact=contact, status=status)
    OrderLine.objects.bulk_create(
        OrderLine(
            order=placed,
            product=p,
            product_ref=p.product_id,
            name=p.name,
            category=p.category,
            unit_price=Decimal("5"),
        )
        for p in products
    )
    return placed


def viewed(contact: Contact, product_id: str, days_ago: int = 1, name: str = "Product Viewed"):
    return EventFactory(
        contact=contact,
        name=name,
        properties={"product_id": product_id},
        occurred_at=timezone.now() - timedelta(days=days_ago),
    )


def ids(products: list[Product]) -> list[str]:
    return [p.product_id for p in products]


@pytest.fixture
def shop() -> dict[str, Product]:
    """Four products and four orders by other customers:
    {mug, saucer}, {mug, saucer}, {mug, spoon}, {tea, spoon}."""
    catalog = {
        pid: Product.objects.create(product_id=pid, name=pid.title(), category=category)
        for pid, category in [
            ("mug", "tableware"),
            ("saucer", "tableware"),
            ("spoon", "tableware"),
            ("tea", "tea"),
        ]
    }
    mug, saucer, spoon, tea = catalog.values()
    for basket in [(mug, saucer), (mug, saucer), (mug, spoon), (tea, spoon)]:
        order(ContactFactory(), *basket)
    return catalog


def test_frequently_bought_together_on_a_hand_made_data_set(shop):
    buyer = ContactFactory()
    order(buyer, shop["mug"])

    counts = recommendations_refresh()

    assert counts == {"pairs": 6, "products": 4}
    pairs = {
        (a.product.product_id, a.other.product_id): a.orders
        for a in ProductAffinity.objects.select_related("product", "other")
    }
    assert pairs == {
        ("mug", "saucer"): 2,
        ("saucer", "mug"): 2,
        ("mug", "spoon"): 1,
        ("spoon", "mug"): 1,
        ("tea", "spoon"): 1,
        ("spoon", "tea"): 1,
    }
    # saucer (2 orders with a mug) before spoon (1), then the bestsellers; never the mug
    assert ids(recommendations_for(buyer)) == ["saucer", "spoon", "tea"]
    assert recommendations_refresh() == counts  # a second run writes the same rows


def test_already_bought_products_are_never_recommended(shop):
    buyer = ContactFactory()
    order(buyer, shop["mug"], shop["saucer"])
    recommendations_refresh()

    assert ids(recommendations_for(buyer)) == ["spoon", "tea"]


def test_a_replenishable_product_may_be_recommended_again(shop):
    Product.objects.filter(product_id="tea").update(replenishable=True)
    buyer = ContactFactory()
    order(buyer, shop["tea"])
    recommendations_refresh()

    # spoon goes with tea; tea is the bestseller of the buyer's category and comes back
    assert ids(recommendations_for(buyer))[:2] == ["spoon", "tea"]


def test_a_refunded_purchase_is_not_recommended_again_nor_used_as_a_seed(shop):
    buyer = ContactFactory()
    order(buyer, shop["tea"], status=OrderStatus.REFUNDED)
    recommendations_refresh()

    # no FBT from tea (spoon), no "tea" category; just the bestsellers without the tea
    assert ids(recommendations_for(buyer)) == ["mug", "saucer", "spoon"]


def test_out_of_stock_products_are_never_recommended(shop):
    buyer = ContactFactory()
    order(buyer, shop["mug"])
    recommendations_refresh()
    Product.objects.filter(product_id="saucer").update(in_stock=False)

    assert ids(recommendations_for(buyer)) == ["spoon", "tea"]
    assert "saucer" not in ids(recommendations_for(None, limit=10))


def test_cart_products_seed_co_purchases_and_are_not_recommended_themselves(shop):
    recommendations_refresh()
    browser = ContactFactory()

    found = recommendations_for(browser, cart=["tea", "not-in-the-catalog", ""])

    # spoon goes with tea; tea is in the cart; then the bestsellers
    assert ids(found) == ["spoon", "mug", "saucer"]


def test_refunded_orders_count_neither_as_co_purchases_nor_as_sales(shop):
    for _ in range(2):
        order(ContactFactory(), shop["mug"], shop["spoon"], status=OrderStatus.REFUNDED)
    order(ContactFactory(), shop["tea"], status=OrderStatus.PARTIALLY_REFUNDED)
    buyer = ContactFactory()
    order(buyer, shop["mug"])

    recommendations_refresh()

    assert (
        ProductAffinity.objects.get(product__product_id="mug", other__product_id="spoon").orders
        == 1
    )
    assert ProductSales.objects.get(product__product_id="spoon").orders == 2
    assert ProductSales.objects.get(product__product_id="tea").orders == 2  # partial refund counts
    assert ids(recommendations_for(buyer))[0] == "saucer"


def test_a_contact_with_no_data_gets_the_bestsellers(shop):
    assert recommendations_for(ContactFactory()) == []  # before the first refresh: nothing

    recommendations_refresh()

    # mug in 3 orders; saucer and spoon in 2 (ties by catalog order); tea in 1
    assert ids(recommendations_for(ContactFactory())) == ["mug", "saucer", "spoon", "tea"]
    assert ids(recommendations_for(None, limit=2)) == ["mug", "saucer"]
    assert recommendations_for(ContactFactory(), limit=0) == []


def test_sales_outside_the_bestseller_window_do_not_count(shop, settings):
    settings.KEEPERS_BESTSELLER_DAYS = 30
    Order.objects.filter(lines__product__product_id="tea").update(
        ordered_at=timezone.now() - timedelta(days=31)
    )

    recommendations_refresh()

    assert "tea" not in ids(recommendations_for(None, limit=10))
    # co-purchases are counted over all time
    assert ProductAffinity.objects.filter(product__product_id="tea").exists()


def test_bestsellers_in_the_contacts_categories_come_before_the_overall_ones(shop):
    kettle = Product.objects.create(product_id="kettle", name="Kettle", category="tea")
    buyer = ContactFactory()
    order(buyer, kettle)  # bought alone: no co-purchases
    recommendations_refresh()

    assert ids(recommendations_for(buyer)) == ["tea", "mug", "saucer", "spoon"]


def test_recently_viewed_products_come_before_the_overall_bestsellers(shop):
    teapot = Product.objects.create(product_id="teapot", name="Teapot", category="teaware")
    Product.objects.create(product_id="old", name="Long ago", category="teaware")
    Product.objects.create(product_id="gone", name="Sold out", in_stock=False)
    looker = ContactFactory()
    viewed(looker, "old", days_ago=40)
    viewed(looker, "gone")
    viewed(looker, "teapot", days_ago=2, name="Product Added")
    viewed(looker, "mug", days_ago=3)
    recommendations_refresh()

    # the viewed mug makes tableware one of their categories, whose bestsellers lead
    assert ids(recommendations_for(looker)) == ["mug", "saucer", "spoon", "teapot"]
    assert ids(recommendations_for(looker, limit=6)) == [
        "mug",
        "saucer",
        "spoon",
        "teapot",
        "tea",
    ]
    assert teapot in recommendations_for(looker, limit=6)


def test_the_number_of_queries_does_not_grow_with_the_contacts_history(
    shop, django_assert_max_num_queries
):
    buyer = ContactFactory()
    extra = [
        Product.objects.create(product_id=f"p{n}", name=f"P{n}", category=f"c{n % 3}")
        for n in range(20)
    ]
    for n in range(10):
        order(buyer, extra[n], shop["mug"] if n % 2 else shop["tea"])
    for n in range(10, 20):
        viewed(buyer, f"p{n}")
    recommendations_refresh()

    with django_assert_max_num_queries(6):
        found = recommendations_for(buyer, limit=12, cart=["saucer", "p15"])

    # spoon goes with the mug; everything else bought or in the cart; then what was viewed
    assert ids(found) == ["spoon"] + [f"p{n}" for n in range(19, 9, -1) if n != 15]


BODY = """{% load keepers %}{% recommendations 3 as products %}
<ul>{% for p in products %}<li>{{ p.name }}</li>{% empty %}<li>nothing yet</li>{% endfor %}</ul>"""


def test_the_template_tag_renders_recommendations_in_an_email(shop):
    template = EmailTemplate.objects.create(name="recs", subject="For you", html_body=BODY)
    buyer = ContactFactory(first_name="Ada")
    order(buyer, shop["mug"])
    recommendations_refresh()
    cart = EventFactory(
        contact=buyer,
        name="Checkout Started",
        properties={"products": [{"product_id": "saucer", "quantity": 1}]},
    )

    plain = email_render(template=template, contact=buyer).text
    with_cart = email_render(template=template, contact=buyer, event=cart).text

    assert plain.startswith("Saucer\nSpoon\nTea")
    assert with_cart.startswith("Spoon\nTea")  # the saucer is in the cart
    assert "Mug" not in plain + with_cart


def test_the_template_tag_never_fails_for_a_contact_with_no_data():
    template = EmailTemplate.objects.create(name="recs", subject="For you", html_body=BODY)

    rendered = email_render(template=template, contact=ContactFactory())

    assert rendered.text.startswith("nothing yet")


def test_staff_see_the_recommendations_on_the_contact_page(shop, staff_client):
    buyer = ContactFactory()
    order(buyer, shop["mug"])
    recommendations_refresh()

    page = staff_client.get(f"/admin/crm/contact/{buyer.pk}/change/")
    new = staff_client.get("/admin/crm/contact/add/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "Recommended products" in html
    assert "<td>Saucer</td><td>tableware</td><td>in stock</td>" in html
    assert new.status_code == 200
    assert "Recommended products" not in new.content.decode()


# --- many contacts at once ----------------------------------------------------------------------


@pytest.fixture
def busy_shop() -> list[Contact]:
    """40 products in 5 categories (some out of stock, some replenishable), 60 contacts with
    random orders (some refunded) and recent or old views, 20 with nothing at all."""
    rng = random.Random(11)
    products = [
        Product.objects.create(
            product_id=f"b{n}",
            name=f"B{n}",
            category=f"cat{n % 5}",
            in_stock=n % 7 != 0,
            replenishable=n % 9 == 0,
        )
        for n in range(40)
    ]
    contacts = [ContactFactory() for _ in range(80)]
    for contact in contacts[:60]:
        for _ in range(rng.randint(0, 4)):
            basket = rng.sample(products, rng.randint(1, 4))
            refunded = rng.random() < 0.1
            order(contact, *basket, status=OrderStatus.REFUNDED if refunded else "placed")
        for _ in range(rng.randint(0, 6)):
            viewed(contact, f"b{rng.randrange(45)}", days_ago=rng.choice([1, 3, 10, 45]))
    recommendations_refresh()
    return contacts


@pytest.mark.parametrize("read", [Recommender.BESTSELLERS_READ, 3])
def test_a_batch_picks_what_one_contact_at_a_time_picks(busy_shop, monkeypatch, read):
    # (with only 3 bestsellers kept per batch, the batch must fall back to queries)
    monkeypatch.setattr(Recommender, "BESTSELLERS_READ", read)
    rng = random.Random(5)
    carts = {c.pk: [f"b{rng.randrange(45)}" for _ in range(rng.randint(0, 3))] for c in busy_shop}
    for limit in (1, 4, 9):
        batch = Recommender(busy_shop)
        for contact in busy_shop:
            cart = carts[contact.pk]
            expected = recommendations_for(contact, limit=limit, cart=cart)
            assert batch.recommend(contact, limit=limit, cart=cart) == expected, contact.pk
    # a contact outside the batch, and no contact at all
    outsider = ContactFactory()
    order(outsider, Product.objects.get(product_id="b1"))
    assert Recommender(busy_shop[:3]).recommend(outsider) == recommendations_for(outsider)
    assert Recommender(busy_shop).recommend(None, limit=5) == recommendations_for(None, limit=5)


def test_a_batch_reads_history_once_and_then_only_co_purchases(
    busy_shop, django_assert_max_num_queries
):
    # order lines, views, viewed products, the ranked bestsellers: 4 queries for the batch;
    # then one co-purchase query per contact who bought something (not fully refunded)
    buyers = sum(
        1
        for c in busy_shop
        if OrderLine.objects.filter(order__contact=c, product__isnull=False)
        .exclude(order__status=OrderStatus.REFUNDED)
        .exists()
    )
    batch = Recommender(busy_shop)
    with django_assert_max_num_queries(4 + buyers):
        for contact in busy_shop:
            batch.recommend(contact, limit=4)
    assert Recommender(busy_shop).recommend(busy_shop[-1]) is not None  # no history: bestsellers
    nobody = Recommender(busy_shop[60:])
    with django_assert_max_num_queries(4):
        for contact in busy_shop[60:]:
            nobody.recommend(contact, limit=4)


def test_a_broadcast_renders_recommendations_per_contact_from_one_batch(shop):
    from campaigns.services.rendering import email_render as render

    template = EmailTemplate.objects.create(name="news", subject="News", html_body=BODY)
    buyer, newcomer = ContactFactory(), ContactFactory()
    order(buyer, shop["mug"])
    recommendations_refresh()
    batch = Recommender([buyer, newcomer])
    texts = [
        render(template=template, contact=c, extra={"recommender": batch}).text
        for c in (buyer, newcomer)
    ]
    assert texts[0].startswith("Saucer\nSpoon\nTea")  # goes with the mug they bought
    assert texts[1].startswith("Mug\nSaucer\nSpoon")  # bestsellers
    assert batch._lines is not None  # read by the batch, once
