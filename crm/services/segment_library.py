"""Ready-made segments: installed as templates (to copy in the admin) and, by the demo,
as active segments."""

from __future__ import annotations

from crm.models import RfmGroup, Segment
from crm.services.segments import segment_save

READY_MADE: list[tuple[str, str, dict]] = [
    (
        "New customers",
        "First order in the last 30 days.",
        {"type": "order", "measure": "first_order_at", "op": "within_last_days", "value": 30},
    ),
    (
        "Repeat buyers",
        "Two or more orders.",
        {"type": "order", "measure": "count", "op": "gte", "value": 2},
    ),
    (
        "VIPs",
        "The top 5% of customers by spend in the last 12 months.",
        {"type": "order", "measure": "spend_percentile", "op": "gte", "value": 95, "days": 365},
    ),
    (
        "Cart abandoners",
        "Added to cart or started checkout in the last 24 hours, no order since.",
        {
            "all": [
                {
                    "any": [
                        {
                            "type": "event",
                            "name": "Product Added",
                            "op": "at_least",
                            "count": 1,
                            "days": 1,
                        },
                        {
                            "type": "event",
                            "name": "Checkout Started",
                            "op": "at_least",
                            "count": 1,
                            "days": 1,
                        },
                    ]
                },
                {
                    "not": {
                        "type": "order",
                        "measure": "last_order_at",
                        "op": "within_last_days",
                        "value": 1,
                    }
                },
            ]
        },
    ),
    (
        "Browse abandoners",
        "Viewed products in the last 24 hours without adding any to the cart.",
        {
            "all": [
                {
                    "type": "event",
                    "name": "Product Viewed",
                    "op": "at_least",
                    "count": 1,
                    "days": 1,
                },
                {"type": "event", "name": "Product Added", "op": "none", "days": 1},
                {
                    "not": {
                        "type": "order",
                        "measure": "last_order_at",
                        "op": "within_last_days",
                        "value": 1,
                    }
                },
            ]
        },
    ),
    (
        "Lapsed customers",
        "Customers whose last order is older than the lapsed window.",
        {"type": "field", "field": "stage", "op": "eq", "value": "lapsed"},
    ),
    (
        "Birthdays this month",
        "Contacts whose birthday falls in the current month.",
        {"type": "field", "field": "birthday", "op": "birthday_this_month"},
    ),
    (
        "Unengaged subscribers",
        "Never ordered, and no opens or clicks for the unengaged window.",
        {"type": "field", "field": "stage", "op": "eq", "value": "unengaged"},
    ),
] + [
    (
        f"RFM: {label}",
        f"Customers in the RFM group “{label}”.",
        {"type": "rfm", "score": "group", "op": "in", "value": [value]},
    )
    for value, label in RfmGroup.choices
]


def segments_install_ready_made(*, active: bool) -> int:
    """Install the library: templates always; active copies when `active`. Idempotent:
    existing names are left alone. Returns how many segments were created."""
    created = 0
    for name, description, rules in READY_MADE:
        wanted = [(f"{name} (template)", True)] + ([(name, False)] if active else [])
        for full_name, is_template in wanted:
            if Segment.objects.filter(name__iexact=full_name).exists():
                continue
            segment_save(
                name=full_name, description=description, rules=rules, is_template=is_template
            )
            created += 1
    return created
