"""A believable demo shop, seeded through the same services integrators use (the CSV
importer, the batch order and event ingestion), so the demo exercises the real paths."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from crm import clock
from crm.models import Contact, MarketingSpend
from crm.services.clv_fits import clv_fit
from crm.services.contacts import Identity
from crm.services.events import EventIn, events_ingest
from crm.services.imports import contacts_import
from crm.services.lifecycle import lifecycle_recompute_all
from crm.services.orders import OrderIn, orders_place
from crm.services.products import products_upsert
from crm.services.rfm import rfm_recompute
from crm.services.segment_library import segments_install_ready_made
from crm.services.segments import segments_refresh_all

FIRST = [
    "Emma",
    "Liam",
    "Olivia",
    "Noah",
    "Ava",
    "Lucas",
    "Mia",
    "Hugo",
    "Yuki",
    "Haruto",
    "Sofia",
    "Mateo",
    "Aiko",
    "Leo",
    "Chloe",
    "Arjun",
    "Zoe",
    "Felix",
    "Nora",
    "Kenji",
    "Amara",
    "Theo",
    "Isla",
    "Omar",
    "Lena",
    "Ravi",
    "Ines",
    "Sven",
    "Maya",
    "Tariq",
]
LAST = [
    "Smith",
    "Garcia",
    "Müller",
    "Tanaka",
    "Rossi",
    "Dubois",
    "Kim",
    "Nguyen",
    "Silva",
    "Johansson",
    "Patel",
    "Cohen",
    "Okafor",
    "Novak",
    "Sato",
    "Moreau",
    "Brown",
    "Lopez",
    "Schmidt",
    "Ito",
    "Walker",
    "Haddad",
    "Kowalski",
    "Fischer",
    "Costa",
]
PLACES = [
    ("en-US", "America/New_York"),
    ("en-US", "America/Los_Angeles"),
    ("en-US", "America/Chicago"),
    ("en-GB", "Europe/London"),
    ("fr-FR", "Europe/Paris"),
    ("de-DE", "Europe/Berlin"),
    ("ja-JP", "Asia/Tokyo"),
    ("en-AU", "Australia/Sydney"),
]
CHANNELS = [
    ("google", "paid_search", 22),
    ("google", "organic", 25),
    ("instagram", "social", 18),
    ("newsletter", "email", 10),
    ("friend", "referral", 10),
    ("direct", "direct", 15),
]
CATALOG = {
    "Coffee": [
        ("Morning Blend beans 1kg", "24.00", True),
        ("Single-origin Ethiopia 250g", "16.50", True),
        ("Decaf Colombia 500g", "18.00", True),
    ],
    "Brewing": [
        ("Pour-over kettle", "59.00", False),
        ("Ceramic dripper", "28.00", False),
        ("Burr grinder", "129.00", False),
        ("Paper filters (100)", "6.50", True),
        ("French press 1L", "39.00", False),
    ],
    "Tea": [
        ("Sencha green tea 100g", "14.00", True),
        ("Earl Grey 200g", "12.00", True),
        ("Matcha ceremonial 30g", "27.00", True),
    ],
    "Mugs": [
        ("Stoneware mug", "18.00", False),
        ("Double-wall glass", "22.00", False),
        ("Travel tumbler", "32.00", False),
    ],
    "Gifts": [
        ("Tasting box", "45.00", False),
        ("Gift card 50", "50.00", False),
        ("Barista course voucher", "89.00", False),
    ],
}
# (share, orders range, days since last order range) per kind of customer
PERSONAS = [
    ("subscriber", 0.28, (0, 0), None),
    ("one_recent", 0.14, (1, 1), (1, 80)),
    ("repeat", 0.16, (2, 3), (1, 80)),
    ("loyal", 0.10, (4, 12), (1, 60)),
    ("at_risk", 0.12, (1, 4), (95, 175)),
    ("lapsed", 0.20, (1, 5), (185, 700)),
]
EVENT_NAMES = [
    "Page Viewed",
    "Product Viewed",
    "Product Added",
    "Email Opened",
    "Email Clicked",
    "Checkout Started",
]


# The demos of the apps above crm, each `installer(say)` and safe to run again: `manage.py
# demo` runs them after crm's own seed and before the metrics seed, in the order they were
# registered — from each app's AppConfig.ready(), which follows INSTALLED_APPS, so the
# lowest layer comes first (campaigns' playbooks, then loyalty's programme).
DemoInstaller = Callable[[Callable[[str], None]], object]
DEMO_INSTALLERS: list[DemoInstaller] = []


def demo_installer_register(installer: DemoInstaller) -> None:
    if installer not in DEMO_INSTALLERS:
        DEMO_INSTALLERS.append(installer)


def demo_seed(
    *, contacts: int = 3000, seed: int = 42, say: Callable[[str], None] = lambda _m: None
) -> bool:
    """Seed the demo shop once. Returns False (and changes nothing) when it is there already.
    One random generator, drawn in a fixed order, so the same seed makes the same shop."""
    if Contact.objects.filter(source="demo").exists():
        return False
    rng = random.Random(seed)
    now = clock.now()
    products = _demo_products(rng)
    products_upsert(products)
    say(f"{len(products)} products in the catalog")
    csv_text, personas = _demo_contacts_csv(rng, contacts)
    report = contacts_import(csv_text, source="demo")
    say(f"{report.created} contacts imported")
    orders, events, signed_up = _demo_history(rng, personas, products, now)
    _demo_record(orders, events, signed_up, say)
    _demo_derive(say)
    return True


def demo_catalog_load(*, seed: int = 42) -> int:
    """The demo shop's catalog alone, no contacts or history (`manage.py demo
    --catalog-only`): the same products `demo_seed` loads first with this seed, for a shop
    that wants to try the editors and previews on an empty database. Safe to run again
    (products are upserted). Returns how many."""
    products = _demo_products(random.Random(seed))
    products_upsert(products)
    return len(products)


def _demo_products(rng: random.Random) -> list[dict]:
    return [
        {
            "product_id": f"SKU-{n:03d}",
            "name": name,
            "category": category,
            "price": Decimal(price),
            "currency": "USD",
            "in_stock": rng.random() > 0.1,
            "replenishable": replenishable,
            "url": f"https://shop.example.com/p/SKU-{n:03d}",
            "image_url": f"https://shop.example.com/img/SKU-{n:03d}.jpg",
        }
        for n, (category, name, price, replenishable) in enumerate(
            ((c, *item) for c, items in CATALOG.items() for item in items), start=1
        )
    ]


def _demo_contacts_csv(rng: random.Random, contacts: int) -> tuple[str, list[tuple]]:
    """The contacts as the CSV importer takes them, and each one's persona."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "email",
            "external_id",
            "first_name",
            "last_name",
            "locale",
            "timezone",
            "birthday",
            "tags",
            "channel",
            "consent",
            "favourite_category",
            "persona",
        ]
    )
    personas = []
    for n in range(1, contacts + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        locale, zone = rng.choice(PLACES)
        source_channel = rng.choices(CHANNELS, weights=[c[2] for c in CHANNELS])[0]
        persona = rng.choices(PERSONAS, weights=[p[1] for p in PERSONAS])[0]
        personas.append(persona)
        birthday = f"{rng.randint(1960, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        tags = ",".join(
            rng.sample(
                ["newsletter", "coffee-club", "wholesale", "vip-event", "gift-buyer"],
                k=rng.randint(0, 2),
            )
        )
        writer.writerow(
            [
                f"{first}.{last}.{n}@example.com".lower().replace("ü", "u"),
                f"cust-{n:05d}",
                first,
                last,
                locale,
                zone,
                birthday if rng.random() < 0.6 else "",
                tags,
                source_channel[1],
                "granted" if rng.random() < 0.85 else "withdrawn",
                rng.choice(list(CATALOG)),
                persona[0],
            ]
        )
    return buffer.getvalue(), personas


def _demo_history(
    rng: random.Random, personas: list[tuple], products: list[dict], now: dt.datetime
) -> tuple[list[OrderIn], list[EventIn], dict[str, dt.datetime]]:
    """Each contact's orders (as their persona buys), events and sign-up date."""
    orders: list[OrderIn] = []
    events: list[EventIn] = []
    signed_up: dict[str, dt.datetime] = {}
    for n, persona in enumerate(personas, start=1):
        external_id = f"cust-{n:05d}"
        who = Identity(external_id=external_id)
        low, high = persona[2]
        count = rng.randint(low, high)
        signed_up[external_id] = now - timedelta(
            days=rng.randint(0, 720), minutes=rng.randint(0, 1400)
        )
        if count:
            days = _demo_order_days(rng, persona, count)
            first_order = now - timedelta(days=max(days))
            signed_up[external_id] = min(
                signed_up[external_id], first_order - timedelta(days=rng.randint(0, 30))
            )
            _demo_orders(rng, who, days, products, now, orders)
        events += _demo_events(rng, who, n, persona, products, now)
    return orders, events, signed_up


def _demo_order_days(rng: random.Random, persona: tuple, count: int) -> list[int]:
    """How many days ago each of a contact's orders was placed (at most `count`)."""
    last_days = rng.randint(*persona[3])
    span = rng.randint(30, 700 - last_days) if count > 1 and last_days < 670 else 0
    days = sorted({last_days + rng.randint(0, span) for _ in range(count)} | {last_days})
    return days[:count]


def _demo_orders(
    rng: random.Random,
    who: Identity,
    days: list[int],
    products: list[dict],
    now: dt.datetime,
    orders: list[OrderIn],
) -> None:
    """Append one contact's orders, one per day in `days` (days ago)."""
    for day in days:
        basket = rng.sample(products, k=rng.randint(1, 3))
        lines = [
            {
                "product_id": p["product_id"],
                "name": p["name"],
                "category": p["category"],
                "quantity": rng.randint(1, 2),
                "price": p["price"],
                "currency": "USD",
                "url": p["url"],
                "image_url": p["image_url"],
            }
            for p in basket
        ]
        total = sum((line["price"] * line["quantity"] for line in lines), Decimal("0"))
        orders.append(
            OrderIn(
                external_id=f"demo-{len(orders) + 1:06d}",
                identity=who,
                total=total,
                currency="USD",
                ordered_at=now - timedelta(days=day, minutes=rng.randint(0, 1400)),
                lines=lines,
                attributes={},
                source="demo",
                backfill=True,  # the shop's history: recorded, but it starts no journey
            )
        )


def _demo_events(
    rng: random.Random,
    who: Identity,
    n: int,
    persona: tuple,
    products: list[dict],
    now: dt.datetime,
) -> list[EventIn]:
    events = []
    for k in range(rng.randint(2, 12)):
        name = rng.choice(EVENT_NAMES)
        product = rng.choice(products)
        engaged_recently = persona[0] != "subscriber" or rng.random() < 0.6
        day = rng.randint(0, 60) if engaged_recently else rng.randint(120, 700)
        events.append(
            EventIn(
                name=name,
                identity=who,
                properties={
                    "product_id": product["product_id"],
                    "name": product["name"],
                    "category": product["category"],
                    "price": str(product["price"]),
                }
                if name.startswith("Product")
                else {"url": "https://shop.example.com/"},
                occurred_at=now - timedelta(days=day, minutes=rng.randint(0, 1400)),
                message_id=f"demo-{n}-{k}",
                source="demo",
            )
        )
    return events


def _demo_record(
    orders: list[OrderIn],
    events: list[EventIn],
    signed_up: dict[str, dt.datetime],
    say: Callable[[str], None],
) -> None:
    """Sign-up dates (spread over two years, each before that customer's first order),
    then the orders and events through the batch ingestion integrators use."""
    stamped = list(Contact.objects.filter(source="demo").only("pk", "external_id"))
    for contact in stamped:
        contact.created_at = signed_up[contact.external_id]
    Contact.objects.bulk_update(stamped, ["created_at"], batch_size=1000)
    for start in range(0, len(orders), 500):
        orders_place(orders[start : start + 500])
    say(f"{len(orders)} orders placed")
    for start in range(0, len(events), 500):
        events_ingest(events[start : start + 500], source="demo")
    say(f"{len(events)} events recorded")


def _demo_derive(say: Callable[[str], None]) -> None:
    """What the nightly jobs would compute: stages, RFM, the ready-made segments."""
    changed = lifecycle_recompute_all(reason="demo seeded")
    say(f"lifecycle stages computed ({changed} changes)")
    rfm_recompute()
    installed = segments_install_ready_made(active=True)
    segments_refresh_all()
    say(f"{installed} ready-made segments installed and filled")


def demo_metrics_seed(say=lambda message: None) -> bool:
    """Marketing spend per paid channel for the last 24 months (so CAC and CLV:CAC have
    figures) and a first predicted-CLV fit. Idempotent."""
    if MarketingSpend.objects.exists():
        return False
    today = clock.now().date()
    month = today.replace(day=1)
    monthly = {"paid_search": Decimal("1800"), "social": Decimal("900"), "email": Decimal("150")}
    rows = []
    for _ in range(24):
        for channel, amount in monthly.items():
            rows.append(MarketingSpend(channel=channel, month=month, amount=amount, currency="USD"))
        month = (month - dt.timedelta(days=1)).replace(day=1)
    MarketingSpend.objects.bulk_create(rows)
    fit = clv_fit()
    say(
        f"marketing spend for 24 months; CLV fit {fit.status}"
        + (f" on {fit.customers} customers" if fit.status == "ok" else f": {fit.error}")
    )
    return True
