"""The product catalog: known from order lines and events, and kept by a catalog feed."""

from __future__ import annotations

from django.db import transaction

from crm.errors import KeepersError
from crm.models import Product
from crm.services.parsing import parse_currency, parse_money, parse_str, reject_unknown

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
    return len(new), len(existing)


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
