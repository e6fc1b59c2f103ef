"""The product catalog: known from order lines and events, and kept by a catalog feed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import transaction

from crm import clock
from crm.db import insert_ignore_returning
from crm.errors import KeepersError
from crm.models import Event, Product
from crm.services.contacts import Identity
from crm.services.events import EventIn, events_ingest
from crm.services.parsing import (
    parse_currency,
    parse_datetime,
    parse_money,
    parse_object,
    parse_str,
    reject_unknown,
)

# Events about a product rather than a person: stored without a contact; campaigns with a
# product_event trigger fan them out to the contacts who asked or showed interest.
RESTOCKED = "Product Restocked"
PRICE_DROPPED = "Price Dropped"
PRODUCT_EVENTS = (RESTOCKED, PRICE_DROPPED)
BACK_IN_STOCK_REQUESTED = "Back In Stock Requested"

PRODUCT_FIELDS = {
    "product_id",
    "name",
    "url",
    "image_url",
    "price",
    "currency",
    "category",
    "in_stock",
    "replenishable",
}


def product_item_parse(raw: object, prefix: str = "") -> dict:
    if not isinstance(raw, dict):
        raise KeepersError("Each product must be a JSON object.", field=prefix.rstrip(".") or None)
    reject_unknown(raw, PRODUCT_FIELDS, prefix)
    item = {"product_id": parse_str(raw.get("product_id"), f"{prefix}product_id", required=True)}
    for name, limit in (("name", 500), ("url", 1000), ("image_url", 1000), ("category", 255)):
        if name in raw:
            item[name] = parse_str(raw[name], f"{prefix}{name}", max_length=limit)
    if raw.get("price") not in (None, ""):
        item["price"] = parse_money(raw["price"], f"{prefix}price")
    if raw.get("currency") not in (None, ""):
        item["currency"] = parse_currency(raw["currency"], f"{prefix}currency")
    for flag in ("in_stock", "replenishable"):
        if flag in raw:
            if not isinstance(raw[flag], bool):
                raise KeepersError("Expected true or false.", field=f"{prefix}{flag}")
            item[flag] = raw[flag]
    return item


@transaction.atomic
def products_upsert(items: list[dict]) -> tuple[int, int]:
    """Create or update catalog rows from parsed items (the feed is the source of truth for
    the fields it sends). Returns (created, updated)."""
    by_id = {item["product_id"]: item for item in items}
    existing = {p.product_id: p for p in Product.objects.filter(product_id__in=list(by_id))}
    before = {pid: (p.in_stock, p.price) for pid, p in existing.items()}
    new = [Product(**item) for pid, item in by_id.items() if pid not in existing]
    Product.objects.bulk_create(new, ignore_conflicts=True)
    changed_fields: set[str] = set()
    to_update = []
    for pid, product in existing.items():
        for name, value in by_id[pid].items():
            if getattr(product, name) != value:
                setattr(product, name, value)
                changed_fields.add(name)
        to_update.append(product)
    if changed_fields:
        Product.objects.bulk_update(to_update, sorted(changed_fields | {"updated_at"}))
    _feed_events(before, by_id)
    return len(new), len(existing)


def _feed_events(before: dict[str, tuple[bool, Decimal | None]], by_id: dict[str, dict]) -> None:
    """The feed's own product events: back in stock (out of stock → in stock) and a lower
    price, once per change (keyed by product and the moment of the feed)."""
    now = clock.now()
    for pid, (was_in_stock, old_price) in before.items():
        item = by_id[pid]
        if item.get("in_stock") is True and not was_in_stock:
            product_event_record(
                name=RESTOCKED,
                product_id=pid,
                message_id=f"feed:{pid}:restocked:{now.isoformat()}",
                source="catalog",
            )
        new_price = item.get("price")
        if old_price is not None and new_price is not None and new_price < old_price:
            product_event_record(
                name=PRICE_DROPPED,
                product_id=pid,
                message_id=f"feed:{pid}:price:{now.isoformat()}",
                properties={"old_price": f"{old_price:.2f}", "new_price": f"{new_price:.2f}"},
                source="catalog",
            )


def product_event_parse(raw: object) -> dict:
    """{"event", "product_id", "message_id"?, "timestamp"?, "properties"?}; Price Dropped
    needs properties.old_price and new_price, the new one lower."""
    if not isinstance(raw, dict):
        raise KeepersError("The product event must be a JSON object.")
    reject_unknown(raw, {"event", "product_id", "message_id", "timestamp", "properties"})
    name = parse_str(raw.get("event"), "event", required=True)
    if name not in PRODUCT_EVENTS:
        raise KeepersError(f"event is one of: {', '.join(PRODUCT_EVENTS)}.", field="event")
    properties = parse_object(raw.get("properties", {}), "properties")
    parsed = {
        "name": name,
        "product_id": parse_str(raw.get("product_id"), "product_id", required=True),
        "message_id": parse_str(raw.get("message_id"), "message_id", max_length=255),
        "occurred_at": parse_datetime(raw.get("timestamp"), "timestamp", default=clock.now()),
        "properties": properties,
    }
    if name == PRICE_DROPPED:
        old = parse_money(properties.get("old_price"), "properties.old_price", allow_zero=False)
        new = parse_money(properties.get("new_price"), "properties.new_price")
        if new >= old:
            raise KeepersError(
                "new_price must be lower than old_price.", field="properties.new_price"
            )
        parsed["properties"] = {**properties, "old_price": f"{old:.2f}", "new_price": f"{new:.2f}"}
    return parsed


@transaction.atomic
def product_event_record(
    *,
    name: str,
    product_id: str,
    message_id: str = "",
    occurred_at: dt.datetime | None = None,
    properties: dict | None = None,
    source: str = "api",
) -> tuple[Event | None, bool]:
    """Store a product event once per (source, message_id) and apply it to the catalog
    (restocked: in stock; price dropped: the new price). A repeat changes nothing and
    returns (the first event, False). The product must be in the catalog."""
    product = Product.objects.select_for_update().filter(product_id=product_id).first()
    if product is None:
        raise KeepersError(
            f"No product {product_id!r} in the catalog: send it to /api/v1/products/ first.",
            field="product_id",
            code="not_found",
            status_code=404,
        )
    now = clock.now()
    message_id = message_id or f"{name}:{product_id}:{now.isoformat()}"
    properties = {
        **(properties or {}),
        "product_id": product_id,
        "name": product.name,
        "url": product.url,
        "image_url": product.image_url,
        "currency": product.currency,
    }
    inserted = insert_ignore_returning(
        Event,
        [
            "contact",
            "anonymous_id",
            "name",
            "properties",
            "context",
            "occurred_at",
            "received_at",
            "source",
            "message_id",
        ],
        [[None, "", name, properties, {}, occurred_at or now, now, source, message_id]],
        conflict=["source", "message_id"],
        returning=["id"],
    )
    if not inserted:
        return Event.objects.filter(source=source, message_id=message_id).first(), False
    if name == RESTOCKED and not product.in_stock:
        product.in_stock = True
        product.save(update_fields=["in_stock", "updated_at"])
    elif name == PRICE_DROPPED:
        product.price = Decimal(properties["new_price"])
        product.save(update_fields=["price", "updated_at"])
    return Event.objects.get(pk=inserted[0][0]), True


def products_learn(items: list[dict]) -> dict[str, int]:
    """Make sure products seen in order lines or events exist, without overwriting what the
    catalog feed said. Returns product_id -> pk."""
    by_id = {i["product_id"]: i for i in items if i.get("product_id")}
    if not by_id:
        return {}
    Product.objects.bulk_create(
        [
            Product(
                product_id=pid,
                name=i.get("name", ""),
                category=i.get("category", ""),
                price=i.get("price"),
                currency=i.get("currency", ""),
                url=i.get("url", ""),
                image_url=i.get("image_url", ""),
            )
            for pid, i in by_id.items()
        ],
        ignore_conflicts=True,
    )
    return dict(Product.objects.filter(product_id__in=list(by_id)).values_list("product_id", "pk"))


def back_in_stock_request(
    *, product_id: str, email: str = "", external_id: str = "", source: str = "api"
) -> tuple[int, bool]:
    """Record that a contact (created from the email if new) wants to hear when this
    product is back: a "Back In Stock Requested" event, once per contact, product and day.
    Returns (event id, created)."""

    if not email and not external_id:
        raise KeepersError("Give the contact's email or external_id.", field="email")
    products_learn([{"product_id": product_id}])
    now = clock.now()
    who = external_id or email.strip().lower()
    [(status, event_id)] = events_ingest(
        [
            EventIn(
                name=BACK_IN_STOCK_REQUESTED,
                identity=Identity(email=email or None, external_id=external_id or None),
                properties={"product_id": product_id},
                occurred_at=now,
                message_id=f"bis:{product_id}:{who}:{now.date().isoformat()}",
            )
        ],
        source=source,
    )
    if event_id is None:
        event_id = (
            Event.objects.filter(
                source=source,
                message_id=f"bis:{product_id}:{who}:{now.date().isoformat()}",
            )
            .values_list("pk", flat=True)
            .first()
        )
    return event_id, status == "created"
