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
from django.db.models import F, Sum, Window
from django.db.models.functions import RowNumber

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
    rows of viewed and cart products, the co-purchases when they have bought or have a
    cart, and the bestsellers. A contact with no data (or None) gets the shop's
    bestsellers, which may be empty. For many contacts, use a Recommender."""
    return Recommender([contact] if contact is not None else [], now=now).recommend(
        contact, limit=limit, cart=cart
    )


class Recommender:
    """`recommendations_for` for a batch of contacts (a broadcast or engine batch): their
    order lines and recent views are read for the whole batch at once, on first use (a
    template without the tag costs nothing), with the viewed products and a ranked list
    of bestsellers; after that a contact costs one query (their co-purchases) when they
    have bought something or have a cart, and none otherwise. The same picks as one
    contact at a time: the same rules, on the same rows."""

    BESTSELLERS_READ = 200  # ranked bestsellers kept per batch; beyond them, a query

    def __init__(self, contacts: Sequence[Contact], *, now: datetime | None = None) -> None:
        self.now = now or clock.now()
        self.contact_ids = {c.pk for c in contacts if c is not None and c.pk is not None}
        self._lines: dict[int, list[tuple]] | None = None
        self._views: dict[int, list[str]] = {}
        self._named: dict[str, Product | None] = {}
        self._ranked: list[Product] | None = None

    # --- what the batch reads once

    def _load(self, cart_refs: Sequence[str] = ()) -> None:
        """The batch's order lines and recent views, and the catalog rows of what they
        viewed and of `cart_refs` (the first contact's cart), in three queries."""
        if self._lines is not None:
            return
        self._lines = {pk: [] for pk in self.contact_ids}
        if not self.contact_ids:
            return
        for contact_id, *row in OrderLine.objects.filter(
            order__contact_id__in=self.contact_ids, product__isnull=False
        ).values_list(
            "order__contact_id",
            "product_id",
            "product__replenishable",
            "product__category",
            "category",
            "order__status",
        ):
            self._lines[contact_id].append(tuple(row))
        newest = Window(
            RowNumber(),
            partition_by=[F("contact_id")],
            order_by=[F("occurred_at").desc(), F("pk").desc()],
        )
        views = (
            Event.objects.filter(
                contact_id__in=self.contact_ids,
                name__in=VIEW_EVENTS,
                occurred_at__gte=self.now - timedelta(days=RECENTLY_VIEWED_DAYS),
            )
            .annotate(newest=newest)
            .filter(newest__lte=RECENT_VIEWS_READ)
            .order_by("contact_id", "newest")
            .values_list("contact_id", "properties")
        )
        refs: dict[int, list[str]] = {}
        for contact_id, properties in views:
            refs.setdefault(contact_id, []).append(_product_ref(properties))
        self._views = {pk: list(dict.fromkeys(filter(None, r))) for pk, r in refs.items()}
        self._products([*cart_refs, *(ref for r in self._views.values() for ref in r)])

    def _products(self, refs: Sequence[str]) -> dict[str, Product]:
        """Catalog rows by the shop's product id, read once per id for the batch."""
        missing = {ref for ref in refs if ref not in self._named}
        if missing:
            found = {p.product_id: p for p in Product.objects.filter(product_id__in=missing)}
            self._named |= {ref: found.get(ref) for ref in missing}
        return {ref: self._named[ref] for ref in refs if self._named.get(ref) is not None}

    def _bestsellers(self, categories: set[str] | None, skip: set[int], n: int) -> list:
        """The first `n` bestsellers (in `categories`, when given) not in `skip`: from the
        batch's ranked list, or a query when that list runs out before `n` are found."""
        if n <= 0:
            return []
        if self._ranked is None:
            self._ranked = list(_bestsellers()[: self.BESTSELLERS_READ])
        picked = [
            p
            for p in self._ranked
            if p.pk not in skip and (categories is None or p.category in categories)
        ][:n]
        if len(picked) == n or len(self._ranked) < self.BESTSELLERS_READ:
            return picked
        query = _bestsellers().exclude(pk__in=skip)
        if categories is not None:
            query = query.filter(category__in=categories)
        return list(query[:n])

    # --- one contact

    def recommend(
        self, contact: Contact | None, *, limit: int = 4, cart: Sequence[str] | None = None
    ) -> list[Product]:
        if limit <= 0:
            return []
        cart_refs = list(dict.fromkeys(str(ref) for ref in (cart or ()) if ref))[:CART_MAX]
        seeds: set[int] = set()  # co-purchases are looked up from these
        categories: set[str] = set()
        skip: set[int] = set()  # bought (not replenishable), in the cart, already chosen
        viewed_refs: list[str] = []
        if contact is not None and contact.pk is not None:
            if contact.pk not in self.contact_ids:  # not of this batch: read on its own
                return Recommender([contact], now=self.now).recommend(
                    contact, limit=limit, cart=cart
                )
            self._load(cart_refs)
            for product_pk, replenishable, category, line_category, status in self._lines.get(
                contact.pk, []
            ):
                # A refunded product was sent back: never pitched again, nor a sign of taste.
                if not replenishable:
                    skip.add(product_pk)
                if status != OrderStatus.REFUNDED:
                    seeds.add(product_pk)
                    categories.add(category or line_category)
            viewed_refs = self._views.get(contact.pk, [])
        named = self._products([*cart_refs, *viewed_refs]) if cart_refs or viewed_refs else {}
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
            take(self._bestsellers(categories, set(skip), limit - len(chosen)))
        take(named[ref] for ref in viewed_refs if ref in named)
        if len(chosen) < limit:
            take(self._bestsellers(None, set(skip), limit - len(chosen)))
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
