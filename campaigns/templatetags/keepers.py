"""Tags for email templates: `{% load keepers %}`.

`{% recommendations 4 as products %}` sets `products` to up to four catalog rows for the
contact being rendered (crm.services.recommendations): co-purchases of what they bought
and of the trigger event's products (a cart, an order, a viewed product), bestsellers in
their categories, what they viewed lately, then the shop's bestsellers."""

from __future__ import annotations

from django import template

from crm.models import Contact, Product
from crm.services.recommendations import recommendations_for

register = template.Library()

DEFAULT_LIMIT = 4
MAX_LIMIT = 24


@register.simple_tag(takes_context=True)
def recommendations(context: template.Context, limit: int | str = DEFAULT_LIMIT) -> list[Product]:
    """Never raises for missing data: no contact, no event or an odd limit still renders
    (with the bestsellers, or nothing when the shop has no sales yet)."""
    contact = context.get("contact")
    try:
        limit = max(0, min(int(limit), MAX_LIMIT))
    except (TypeError, ValueError):
        limit = DEFAULT_LIMIT
    return recommendations_for(
        contact if isinstance(contact, Contact) else None,
        limit=limit,
        cart=_event_products(context.get("event")),
    )


def _event_products(event: object) -> list[str]:
    """The shop's product ids in the trigger event, as rendering.event_context exposes it:
    `event.properties.items` (or the raw `products`), or a single `product_id`."""
    properties = event.get("properties") if isinstance(event, dict) else None
    if not isinstance(properties, dict):
        return []
    items = properties.get("items") or properties.get("products")
    refs = [
        str(item.get("product_id") or item.get("sku") or "")
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict)
    ]
    refs.append(str(properties.get("product_id") or properties.get("sku") or ""))
    return [ref for ref in refs if ref]
