"""Recommendations in a newsletter: the cost of `{% recommendations 4 as products %}` per
message, one contact at a time (`recommendations_for`, what every render did before) against
a sending batch's `Recommender` (what broadcasts and the engine now pass to the template).

Run by hand; results go to docs/benchmarks.md:

    .venv/bin/python bench/recommendations.py [--contacts 20000] [--render 3000]

1. drops and recreates `keepers_bench_recommendations` on 127.0.0.1:5432 and migrates;
2. loads (ORM bulk_create) a catalog of `--products` products in 12 categories, `--contacts`
   contacts, 60% of them customers with 1–6 orders of 1–4 lines each (5% refunded), and
   up to 8 recent product views for 70% of them; then `recommendations_refresh()`;
3. renders a newsletter with the tag for `--render` contacts (a random sample) in batches
   of KEEPERS_ENGINE_BATCH (500), both ways, and reports messages per second, queries per
   message and that both ways picked the same products.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import setup_fresh

BODY = """{% load keepers %}{% recommendations 4 as products %}<h1>This week</h1>
<ul>{% for p in products %}<li><a href="{{ p.url }}">{{ p.name }}</a> {{ p.price }}</li>
{% empty %}<li>New arrivals soon</li>{% endfor %}</ul>"""


def load(args) -> None:
    from django.utils import timezone

    from crm.models import Contact, Event, Order, OrderLine, Product
    from crm.services.recommendations import recommendations_refresh

    rng = random.Random(args.seed)
    now = timezone.now()
    products = Product.objects.bulk_create(
        Product(
            product_id=f"p{n}",
            name=f"Product {n}",
            category=f"category {n % 12}",
            price=Decimal(rng.randint(5, 120)),
            currency="USD",
            in_stock=rng.random() > 0.08,
            replenishable=rng.random() < 0.1,
            url=f"https://shop.example/p{n}",
        )
        for n in range(args.products)
    )
    weights = [1 / (k + 1) for k in range(len(products))]  # a few bestsellers, a long tail
    contacts = Contact.objects.bulk_create(
        Contact(email=f"c{n}@example.com", first_name=f"C{n}", created_at=now, updated_at=now)
        for n in range(args.contacts)
    )
    orders, lines, events = [], [], []
    for contact in contacts:
        if rng.random() < 0.6:
            for k in range(rng.randint(1, 6)):
                orders.append(
                    Order(
                        external_id=f"o{contact.pk}-{k}",
                        contact=contact,
                        total=Decimal("50"),
                        currency="USD",
                        status="refunded" if rng.random() < 0.05 else "placed",
                        ordered_at=now - timedelta(days=rng.randint(1, 300)),
                    )
                )
        if rng.random() < 0.7:
            for _ in range(rng.randint(1, 8)):
                product = rng.choices(products, weights)[0]
                events.append(
                    Event(
                        contact=contact,
                        name="Product Viewed",
                        properties={"product_id": product.product_id},
                        occurred_at=now - timedelta(days=rng.randint(0, 29)),
                        received_at=now,
                        message_id=f"v{len(events)}",
                    )
                )
    Order.objects.bulk_create(orders, batch_size=5000)
    for placed in orders:
        for product in {rng.choices(products, weights)[0] for _ in range(rng.randint(1, 4))}:
            lines.append(
                OrderLine(
                    order=placed,
                    product=product,
                    product_ref=product.product_id,
                    name=product.name,
                    category=product.category,
                    unit_price=product.price,
                )
            )
    OrderLine.objects.bulk_create(lines, batch_size=5000)
    Event.objects.bulk_create(events, batch_size=5000)
    started = time.perf_counter()
    refreshed = recommendations_refresh()
    print(
        f"loaded {len(products)} products, {len(contacts):,} contacts, {len(orders):,} orders, "
        f"{len(lines):,} lines, {len(events):,} views; refresh {time.perf_counter() - started:.1f} s "
        f"({refreshed['pairs']:,} pairs)"
    )


def render_all(contacts, batched: bool) -> tuple[float, int, list]:
    from django.conf import settings
    from django.db import connection

    from campaigns.models import EmailTemplate
    from campaigns.services.rendering import email_render
    from crm.services.recommendations import Recommender

    template = EmailTemplate.objects.get(name="bench newsletter")
    picks = []
    size = settings.KEEPERS_ENGINE_BATCH
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(1)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        started = time.perf_counter()
        for start in range(0, len(contacts), size):
            batch = contacts[start : start + size]
            extra = {"recommender": Recommender(batch)} if batched else {}
            for contact in batch:
                html = email_render(template=template, contact=contact, extra=extra).html
                picks.append(html.count("<li>"))
        seconds = time.perf_counter() - started
    return seconds, len(queries), picks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--products", type=int, default=400)
    p.add_argument("--contacts", type=int, default=20_000)
    p.add_argument("--render", type=int, default=3_000)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--db", default="keepers_bench_recommendations")
    args = p.parse_args()
    setup_fresh(args.db)
    load(args)

    from campaigns.models import EmailTemplate
    from crm.models import Contact
    from crm.services.recommendations import Recommender, recommendations_for

    EmailTemplate.objects.create(name="bench newsletter", subject="This week", html_body=BODY)
    ids = sorted(random.Random(args.seed).sample(range(args.contacts), args.render))
    pks = list(Contact.objects.order_by("pk").values_list("pk", flat=True))
    contacts = list(Contact.objects.filter(pk__in=[pks[i] for i in ids]).order_by("pk"))
    render_all(contacts[:200], batched=False)  # warm the template cache

    rows = []
    for batched in (False, True, False, True):
        seconds, queries, _ = render_all(contacts, batched)
        rows.append((batched, seconds, queries))
        print(
            f"{'batch Recommender' if batched else 'one at a time    '}: "
            f"{len(contacts) / seconds:,.0f} messages/s, {queries / len(contacts):.2f} "
            f"queries per message ({seconds:.2f} s for {len(contacts):,})"
        )
    batch = Recommender(contacts)
    same = all(
        batch.recommend(c, limit=4) == recommendations_for(c, limit=4) for c in contacts[:1000]
    )
    print(f"same picks both ways on the first 1,000: {same}")


if __name__ == "__main__":
    main()
