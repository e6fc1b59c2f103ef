"""Product recommendations for emails: frequently bought together with what the contact
bought or has in the cart, bestsellers in their categories, what they viewed lately, and
the shop's bestsellers as the fallback. Never a product they already bought (unless the
catalog marks it replenishable), never one out of stock, never one in the current cart.

Co-purchase counts (ProductAffinity) and bestsellers (ProductSales) are materialised by
recommendations_refresh, nightly; recommendations_for only reads them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Sum

from crm import clock
from crm.db import db_datetime
from crm.models import (
    Contact,
    Event,
    Order,
    OrderLine,
    OrderStatus,
    Product,
    ProductAffinity,
    ProductSales,
)

VIEW_EVENTS = ("Product Viewed", "Product Added")
RECENTLY_VIEWED_DAYS = 30
RECENT_VIEWS_READ = 50  # the newest views are enough to know what someone looks at
CART_MAX = 100


def bestseller_days() -> int:
    return settings.KEEPERS_BESTSELLER_DAYS


@transaction.atomic
def recommendations_refresh(*, now: datetime | None = None) -> dict[str, int]:
    """Rebuild both tables from live (not fully refunded) orders, each with one DELETE and
    one INSERT … SELECT. DELETE rather than TRUNCATE: renders keep reading the previous
    counts until this commits. On PostgreSQL the tables are locked against a concurrent
    refresh (reads go on), so two runs queue instead of colliding on the pair constraint;
    a second run writes the same rows again."""
    now = now or clock.now()
    qn = connection.ops.quote_name
    lines, orders = qn(OrderLine._meta.db_table), qn(Order._meta.db_table)
    affinity, sales = qn(ProductAffinity._meta.db_table), qn(ProductSales._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"LOCK TABLE {affinity}, {sales} IN EXCLUSIVE MODE")
        cursor.execute(f"DELETE FROM {affinity}")
        cursor.execute(
            # An order with two lines of one product still counts once per pair.
            f"""
            INSERT INTO {affinity} (product_id, other_id, orders)
            SELECT a.product_id, b.product_id, COUNT(DISTINCT a.order_id)
            FROM {lines} a
            JOIN {lines} b ON b.order_id = a.order_id AND b.product_id <> a.product_id
            JOIN {orders} o ON o.id = a.order_id
            WHERE o.status <> %s
            GROUP BY a.product_id, b.product_id
            """,
            [OrderStatus.REFUNDED],
        )
        pairs = cursor.rowcount
        cursor.execute(f"DELETE FROM {sales}")
        cursor.execute(
            f"""
            INSERT INTO {sales} (product_id, units, orders, refreshed_at)
            SELECT l.product_id, SUM(l.quantity), COUNT(DISTINCT l.order_id), %s
            FROM {lines} l JOIN {orders} o ON o.id = l.order_id
            WHERE o.status <> %s AND o.ordered_at >= %s AND l.product_id IS NOT NULL
            GROUP BY l.product_id
            """,
            [
                db_datetime(now),
                OrderStatus.REFUNDED,
                db_datetime(now - timedelta(days=bestseller_days())),
            ],
        )
        products = cursor.rowcount
    return {"pairs": pairs, "products": products}


def recommendations_for(
    contact: Contact | None,
    *,
    limit: int = 4,
    cart: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[Product]:
    """Up to `limit` in-stock products for this contact, best first; `cart` holds the
    shop's product ids of the cart (or order) the email is about. At most six queries
    whatever the contact's history: their order lines, their recent views, the catalog
    rows of viewed and cart products, then one query per tier that still has room. A
    contact with no data (or None) gets the shop's bestsellers, which may be empty."""
    if limit <= 0:
        return []
    now = now or clock.now()
    cart_refs = list(dict.fromkeys(str(ref) for ref in (cart or ()) if ref))[:CART_MAX]
    seeds: set[int] = set()  # co-purchases are looked up from these
    categories: set[str] = set()
    skip: set[int] = set()  # bought (not replenishable), in the cart, already chosen
    viewed_refs: list[str] = []
    if contact is not None and contact.pk is not None:
        rows = OrderLine.objects.filter(order__contact=contact, product__isnull=False).values_list(
            "product_id", "product__replenishable", "product__category", "category", "order__status"
        )
        for product_pk, replenishable, category, line_category, status in rows:
            # A refunded product was sent back: never pitched again, nor a sign of taste.
            if not replenishable:
                skip.add(product_pk)
            if status != OrderStatus.REFUNDED:
                seeds.add(product_pk)
                categories.add(category or line_category)
        viewed = (
            Event.objects.filter(
                contact=contact,
                name__in=VIEW_EVENTS,
                occurred_at__gte=now - timedelta(days=RECENTLY_VIEWED_DAYS),
            )
            .order_by("-occurred_at", "-pk")
            .values_list("properties", flat=True)[:RECENT_VIEWS_READ]
        )
        viewed_refs = list(dict.fromkeys(filter(None, map(_product_ref, viewed))))
    named: dict[str, Product] = {}
    if cart_refs or viewed_refs:
        named = {
            p.product_id: p
            for p in Product.objects.filter(product_id__in={*cart_refs, *viewed_refs})
        }
    for ref in cart_refs:
        if ref in named:
            seeds.add(named[ref].pk)
            skip.add(named[ref].pk)
    categories |= {named[ref].category for ref in [*cart_refs, *viewed_refs] if ref in named}
    categories.discard("")

    chosen: list[Product] = []

    def take(products) -> None:
        for product in products:
            if len(chosen) < limit and product.in_stock and product.pk not in skip:
                chosen.append(product)
                skip.add(product.pk)

    if seeds:
        take(
            Product.objects.filter(in_stock=True, bought_with__product_id__in=seeds)
            .exclude(pk__in=skip)
            .annotate(score=Sum("bought_with__orders"))
            .order_by("-score", F("sales__orders").desc(nulls_last=True), "pk")[:limit]
        )
    if len(chosen) < limit and categories:
        take(
            _bestsellers()
            .filter(category__in=categories)
            .exclude(pk__in=skip)[: limit - len(chosen)]
        )
    take(named[ref] for ref in viewed_refs if ref in named)
    if len(chosen) < limit:
        take(_bestsellers().exclude(pk__in=skip)[: limit - len(chosen)])
    return chosen


def _bestsellers():
    return Product.objects.filter(in_stock=True, sales__isnull=False).order_by(
        "-sales__orders", "-sales__units", "pk"
    )


def _product_ref(properties: object) -> str:
    """The shop's product id of a Segment e-commerce event (product_id, or sku)."""
    if not isinstance(properties, dict):
        return ""
    return str(properties.get("product_id") or properties.get("sku") or "")
