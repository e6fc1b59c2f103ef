"""Orders and refunds. Orders are idempotent on their external id; a refund is a recorded
row and a change of the order's refunded total and status, never a deletion.

One order path: however an order arrives (Segment's track, the REST API, a CSV import, the
demo, a store connector), the order it creates is recorded once as an "Order Completed"
event with Segment's e-commerce spec v2 properties, and each refund as an "Order Refunded"
event, so journeys, goals and segments see every order alike. Only an order that came as
Segment's own "Order Completed" keeps that event instead (`OrderIn.event_recorded`).
History (an import, the demo's seed, `backfill` in the API) is marked
`properties.backfill = true`: stored and counted, but it starts no journey unless the
trigger asks (`include_backfill`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from crm import bus, clock
from crm.db import insert_ignore_returning
from crm.errors import KeepersError, NotFound
from crm.models import Order, OrderLine, OrderStatus, Refund
from crm.services.changes import changes_mark_contacts
from crm.services.contacts import Identity, email_normalize, identities_resolve
from crm.services.events import EventIn, events_record
from crm.services.lifecycle import lifecycle_recompute
from crm.services.parsing import (
    parse_bool,
    parse_currency,
    parse_datetime,
    parse_int,
    parse_money,
    parse_object,
    parse_str,
    reject_unknown,
)
from crm.services.products import products_learn

ORDER_FIELDS = {
    "external_id",
    "email",
    "contact_external_id",
    "total",
    "currency",
    "ordered_at",
    "items",
    "attributes",
    "source",
    "referral_code",
    "backfill",
}
LINE_FIELDS = {"product_id", "sku", "name", "category", "quantity", "price", "url", "image_url"}


@dataclass
class OrderIn:
    external_id: str
    identity: Identity
    total: Decimal
    currency: str
    ordered_at: datetime
    lines: list[dict]
    attributes: dict
    source: str = "api"
    backfill: bool = False  # history: its event starts no journey (see the module's doc)
    event_recorded: bool = False  # it came as an "Order Completed" event, already stored


# Where crm records the events of the orders and refunds it stores (message ids
# `order:<external_id>` and `refund:<refund id>`, so a retry records nothing twice).
ORDER_EVENTS_SOURCE = "orders"
ORDER_COMPLETED = "Order Completed"
ORDER_REFUNDED = "Order Refunded"
# Order attributes that are Segment spec properties of Order Completed, copied as given.
SPEC_ATTRIBUTES = (
    "checkout_id",
    "cart_id",
    "affiliation",
    "coupon",
    "discount",
    "shipping",
    "tax",
    "referral_code",
)


def order_item_parse(raw: object, *, prefix: str = "", now: datetime | None = None) -> OrderIn:
    if not isinstance(raw, dict):
        raise KeepersError("Each order must be a JSON object.", field=prefix.rstrip(".") or None)
    reject_unknown(raw, ORDER_FIELDS, prefix)
    email = raw.get("email")
    identity = Identity(
        email=email_normalize(email, field_name=f"{prefix}email") if email else None,
        external_id=parse_str(raw.get("contact_external_id"), f"{prefix}contact_external_id")
        or None,
    )
    if not identity.email and not identity.external_id:
        raise KeepersError(
            "Give the customer's email or contact_external_id.",
            field=f"{prefix}email",
            code="required",
        )
    currency = parse_currency(
        raw.get("currency", settings.KEEPERS_BASE_CURRENCY), f"{prefix}currency"
    )
    items = raw.get("items") or []
    if not isinstance(items, list):
        raise KeepersError("items must be a list.", field=f"{prefix}items")
    lines = [line_parse(item, f"{prefix}items[{n}].", currency) for n, item in enumerate(items)]
    return OrderIn(
        external_id=parse_str(raw.get("external_id"), f"{prefix}external_id", required=True),
        identity=identity,
        total=parse_money(raw.get("total"), f"{prefix}total"),
        currency=currency,
        ordered_at=parse_datetime(
            raw.get("ordered_at"), f"{prefix}ordered_at", default=now or clock.now()
        ),
        lines=lines,
        attributes={
            **parse_object(raw.get("attributes"), f"{prefix}attributes"),
            **(
                {"referral_code": parse_str(raw["referral_code"], f"{prefix}referral_code")}
                if raw.get("referral_code")
                else {}
            ),
        },
        source=parse_str(raw.get("source"), f"{prefix}source", max_length=100) or "api",
        backfill=parse_bool(raw.get("backfill", False), f"{prefix}backfill"),
    )


def line_parse(raw: object, prefix: str, currency: str) -> dict:
    """An order line, in our names or Segment's (product_id or sku, price, quantity)."""
    if not isinstance(raw, dict):
        raise KeepersError("Each item must be a JSON object.", field=prefix.rstrip("."))
    product_id = raw.get("product_id") or raw.get("sku") or raw.get("id")
    return {
        "product_id": parse_str(product_id, f"{prefix}product_id"),
        "name": parse_str(raw.get("name"), f"{prefix}name", max_length=500),
        "category": parse_str(raw.get("category"), f"{prefix}category"),
        "quantity": parse_int(raw.get("quantity", 1), f"{prefix}quantity", minimum=1),
        "price": parse_money(raw.get("price", 0), f"{prefix}price"),
        "currency": currency,
        "url": parse_str(raw.get("url"), f"{prefix}url", max_length=1000),
        "image_url": parse_str(raw.get("image_url"), f"{prefix}image_url", max_length=1000),
    }


@transaction.atomic
def orders_place(orders: list[OrderIn]) -> list[tuple[str, int]]:
    """Store parsed orders in one batch. Returns, per order, ("created", id) or
    ("duplicate", id) when an order with that external id was already stored. Each new
    order's contact is created if unknown, and its stage recomputed."""
    if not orders:
        return []
    contact_ids = identities_resolve([o.identity for o in orders], source=orders[0].source)
    now = clock.now()
    fields = [
        "external_id",
        "contact",
        "total",
        "currency",
        "refunded_total",
        "status",
        "ordered_at",
        "source",
        "attributes",
        "created_at",
    ]
    rows, seen = [], set()
    for order, contact_id in zip(orders, contact_ids, strict=True):
        if order.external_id in seen:
            continue
        seen.add(order.external_id)
        rows.append(
            [
                order.external_id,
                contact_id,
                order.total,
                order.currency,
                Decimal("0"),
                OrderStatus.PLACED,
                order.ordered_at,
                order.source,
                order.attributes,
                now,
            ]
        )
    inserted = dict(
        (ext, pk)
        for pk, ext in insert_ignore_returning(
            Order, fields, rows, conflict=["external_id"], returning=["id", "external_id"]
        )
    )
    existing = dict(
        Order.objects.filter(
            external_id__in=[o.external_id for o in orders if o.external_id not in inserted]
        ).values_list("external_id", "pk")
    )
    new_orders = [
        (o, c) for o, c in zip(orders, contact_ids, strict=True) if o.external_id in inserted
    ]
    product_pks = products_learn([line for o, _ in new_orders for line in o.lines])
    OrderLine.objects.bulk_create(
        [
            OrderLine(
                order_id=inserted[o.external_id],
                product_id=product_pks.get(line["product_id"]),
                product_ref=line["product_id"],
                name=line["name"],
                category=line["category"],
                quantity=line["quantity"],
                unit_price=line["price"],
            )
            for o, _ in new_orders
            for line in o.lines
        ]
    )
    order_events_record([(o, c) for o, c in new_orders if not o.event_recorded])
    changes_mark_contacts({c for _, c in new_orders}, "order")
    lifecycle_recompute(contact_ids={c for _, c in new_orders}, reason="order placed")
    bus.publish_many(
        [bus.OrderPlaced(order_id=inserted[o.external_id], contact_id=c) for o, c in new_orders]
    )
    results: list[tuple[str, int]] = []
    claimed: set[str] = set()
    for order in orders:
        if order.external_id in inserted and order.external_id not in claimed:
            claimed.add(order.external_id)
            results.append(("created", inserted[order.external_id]))
        else:
            results.append(
                ("duplicate", inserted.get(order.external_id) or existing[order.external_id])
            )
    return results


def order_event_properties(order: OrderIn) -> dict:
    """An order as Segment's spec v2 "Order Completed" describes it: order_id, total and
    revenue, currency, products, and the spec's other properties (checkout_id, cart_id,
    coupon, …) where the order's attributes give them."""
    properties = {
        **order.attributes,
        "order_id": order.external_id,
        "total": float(order.total),
        "revenue": float(order.total),
        "currency": order.currency,
        "products": [
            {
                key: value
                for key, value in (
                    ("product_id", line["product_id"]),
                    ("sku", line["product_id"]),
                    ("name", line["name"]),
                    ("category", line["category"]),
                    ("price", float(line["price"])),
                    ("quantity", line["quantity"]),
                    ("url", line["url"]),
                    ("image_url", line["image_url"]),
                )
                if value not in ("", None)
            }
            for line in order.lines
        ],
    }
    if order.backfill:
        properties["backfill"] = True
    return properties


def order_events_record(orders: list[tuple[OrderIn, int]]) -> None:
    """The "Order Completed" event of each newly stored (order, contact id), in one INSERT
    (PostgreSQL; 3,000 a statement on SQLite); a retry of the same order records nothing new. History is stored without
    an announcement on the bus (it is not news) and marked as backfill."""
    if not orders:
        return
    # SQLite takes at most 32,766 values in a statement (9 an event); PostgreSQL, through
    # psycopg's client-side binding, any number.
    size = 3_000 if connection.vendor == "sqlite" else len(orders)
    for backfill in (False, True):
        chosen = [(o, c) for o, c in orders if o.backfill is backfill]
        for start in range(0, len(chosen), size):
            _order_events_insert(chosen[start : start + size], backfill)


def _order_events_insert(chosen: list[tuple[OrderIn, int]], backfill: bool) -> None:
    if chosen:
        events_record(
            [
                EventIn(
                    name=ORDER_COMPLETED,
                    identity=Identity(),
                    properties=order_event_properties(order),
                    occurred_at=order.ordered_at,
                    message_id=f"order:{order.external_id}",
                    source=ORDER_EVENTS_SOURCE,
                )
                for order, _ in chosen
            ],
            [contact_id for _, contact_id in chosen],
            announce=not backfill,
        )


@transaction.atomic
def order_refund(
    *,
    order_external_id: str,
    amount: Decimal | None = None,
    reason: str = "",
    refund_id: str = "",
    at: datetime | None = None,
    event_recorded: bool = False,
) -> tuple[Refund, bool]:
    """Record a refund of `amount` (the whole remaining total when None), and its "Order
    Refunded" event unless it came as one (`event_recorded`). Idempotent on `refund_id`.
    Returns (refund, created)."""
    order = Order.objects.select_for_update().filter(external_id=order_external_id).first()
    if order is None:
        raise NotFound(f"No order with external_id '{order_external_id}'.", field="order_id")
    if refund_id:
        previous = Refund.objects.filter(order=order, external_id=refund_id).first()
        if previous:
            return previous, False
    remaining = order.total - order.refunded_total
    amount = remaining if amount is None else amount
    if amount <= 0:
        raise KeepersError(
            "This order has nothing left to refund.",
            field="amount",
            code="conflict",
            status_code=409,
        )
    if amount > remaining:
        raise KeepersError(
            f"The refund ({amount}) is more than what is left on the order ({remaining}).",
            field="amount",
        )
    refund = Refund.objects.create(
        order=order,
        external_id=refund_id,
        amount=amount,
        reason=reason[:500],
        refunded_at=at or clock.now(),
    )
    fully = amount == remaining
    Order.objects.filter(pk=order.pk).update(
        refunded_total=F("refunded_total") + amount,
        status=OrderStatus.REFUNDED if fully else OrderStatus.PARTIALLY_REFUNDED,
    )
    if not event_recorded:
        events_record(
            [
                EventIn(
                    name=ORDER_REFUNDED,
                    identity=Identity(),
                    properties={
                        "order_id": order.external_id,
                        "total": float(amount),
                        "revenue": float(amount),
                        "currency": order.currency,
                        **({"reason": refund.reason} if refund.reason else {}),
                        **({"refund_id": refund_id} if refund_id else {}),
                    },
                    occurred_at=refund.refunded_at,
                    message_id=f"refund:{refund.pk}",
                    source=ORDER_EVENTS_SOURCE,
                )
            ],
            [order.contact_id],
        )
    changes_mark_contacts([order.contact_id], "order")
    lifecycle_recompute(contact_ids=[order.contact_id], reason="order refunded")
    bus.publish(
        bus.OrderRefunded(order_id=order.pk, contact_id=order.contact_id, refund_id=refund.pk)
    )
    return refund, True
