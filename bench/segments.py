#!/usr/bin/env python
"""Segment benchmark: rule counts, full and incremental refresh, and ingestion, on
PostgreSQL at 1,000,000 contacts (~10M events, ~3M orders).

    .venv/bin/python bench/segments.py                     # full scale, writes the report
    .venv/bin/python bench/segments.py --contacts 50000    # a quick check
    .venv/bin/python bench/segments.py --skip-load         # re-measure the loaded database

What it does, in one run:

1. drops and recreates `keepers_bench_segments` on 127.0.0.1:5432 (user postgres), runs
   the migrations, then loads synthetic data with COPY (psycopg 3): contacts (profile,
   attributes JSON, stage), tags, consent records, events (Product Viewed / Page Viewed /
   Product Added / Email Opened over the last 365 days, in time order), orders (USD and
   some EUR, placed / refunded / partially refunded, over two years) and order lines.
   Secondary indexes and foreign keys are dropped for the load and recreated after it,
   exactly as the migrations defined them; then VACUUM ANALYZE and rfm_recompute();
2. for five representative rules (contact field + attribute, event, order, RFM, and a
   nested all/any/not rule), times the member count (warm, median of 3) and a naive
   per-contact Python loop over the ORM on a random sample (extrapolated to all contacts),
   and checks both agree on the sample; a few other rule shapes are counted too;
3. times the first refresh of two rules on a fresh install (membership statistics of an
   empty table), then the first full refresh of 50 active dynamic segments (then ANALYZE);
4. times full refreshes (first: everyone enters; second: no-op) of the five rules and of a
   segment tuned to ~10% of contacts (100k at full scale), then the no-op full refresh of
   the 50;
5. changes the data of 1,000 random contacts (new events, orders, profile edits), marks
   them with changes_mark and times segments_refresh_changed() over the 50 segments;
6. times events_ingest (batches of 1,000) with 0 and with 50 active segments, and the
   incremental pass that consumes the marks ingestion queued;
7. prints a table and writes bench/results-segments.md, with the plans of what missed
   its target.

Only 127.0.0.1 is contacted. Every loop is bounded; statements have a timeout and the
as-shipped refreshes and passes a time budget (the script cancels its own backend). What
the benchmarks share (database and Django setup, machine info, dropping and rebuilding
secondary indexes) is in bench/harness.py. Progress goes to stdout, before the report.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

# bench/harness.py: this script's directory is first on sys.path when it is run
import harness
from harness import (
    COPY_EVENTS,
    ROOT,
    backend_pid,
    drop_secondary,
    git,
    machine,
    migrate,
    pg,
    recreate_database,
    restore_secondary,
    set_statement_timeout,
    setup_django,
    verdict,
)

TIMEZONES = [
    ("America/New_York", 20),
    ("America/Chicago", 10),
    ("America/Los_Angeles", 12),
    ("Europe/London", 10),
    ("Europe/Paris", 8),
    ("Europe/Berlin", 8),
    ("Europe/Madrid", 5),
    ("Asia/Tokyo", 6),
    ("Australia/Sydney", 4),
    ("America/Sao_Paulo", 5),
    ("", 12),
]
LOCALES = ["en-US", "en-GB", "fr-FR", "de-DE", "es-ES", "ja-JP", "pt-BR", "it-IT"]
PLANS = [("gold", 10), ("silver", 20), ("bronze", 30), ("free", 40)]
SOURCES = ["signup", "import", "api", "checkout"]
CHANNELS = ["organic", "paid_search", "social", "email", "referral"]
FIRST = ["Ann", "Bob", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ida", "Jo", "Kim", "Lou"]
LAST = ["Smith", "Garcia", "Martin", "Müller", "Rossi", "Tanaka", "Silva", "Dubois", "Khan"]
CATEGORIES = ["shoes", "coffee", "books", "kitchen", "garden", "toys", "audio", "outdoor"]
TAGS = [
    ("vip", 0.05),
    ("newsletter", 0.30),
    ("wholesale", 0.02),
    ("beta", 0.04),
    ("influencer", 0.01),
    ("student", 0.06),
    ("employee", 0.005),
    ("b2b", 0.03),
    ("gift_buyer", 0.08),
    ("sale_hunter", 0.10),
]
# (name, share of events)
EVENT_MIX = [
    ("Product Viewed", 0.45),
    ("Page Viewed", 0.30),
    ("Product Added", 0.12),
    ("Email Opened", 0.13),
]
SKUS_PER_CATEGORY = 50


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------
log = partial(harness.log, file=sys.stdout)


def weighted(pairs):
    """A function of a uniform draw in [0, 1) returning a value by weight."""
    total = sum(w for _, w in pairs)
    cum, acc = [], 0.0
    for value, w in pairs:
        acc += w / total
        cum.append((acc, value))

    def pick(u: float):
        for edge, value in cum:
            if u < edge:
                return value
        return cum[-1][1]

    return pick


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms"


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S+00")


class CopyWriter:
    """Buffers text-format COPY lines and writes them in large chunks."""

    def __init__(self, copy, chunk: int = 20000):
        self.copy, self.chunk, self.lines = copy, chunk, []

    def add(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            self.copy.write("".join(self.lines))
            self.lines = []


# ------------------------------------------------------------------------------------------
# Phase 1: database and data
# ------------------------------------------------------------------------------------------
def load_data(args, now: datetime) -> dict:
    """COPY the synthetic shop into the migrated, empty database. Returns volumes/timings."""
    rng = random.Random(args.seed)
    n = args.contacts
    timings: dict[str, float] = {}
    volumes: dict[str, int] = {}
    conn = pg(args.db, autocommit=True)
    cur = conn.cursor()
    cur.execute("SET maintenance_work_mem = '1GB'")
    cur.execute("SET synchronous_commit = off")
    big = [
        "crm_contact",
        "crm_contact_tags",
        "crm_consentrecord",
        "crm_event",
        "crm_order",
        "crm_orderline",
    ]
    saved = {t: drop_secondary(cur, t) for t in big}

    # --- per-contact traits decided up front (orders drive the lifecycle stage)
    t0 = time.perf_counter()
    customer_share = 0.45
    mean_orders = args.orders_per_contact / customer_share  # per customer
    order_count = [0] * (n + 1)  # by contact id (1-based)
    favourite = [0] * (n + 1)
    for cid in range(1, n + 1):
        favourite[cid] = rng.randrange(len(CATEGORIES))
        if rng.random() < customer_share:
            # 1 + floor(exponential): mean 1 + (mean_orders - 1 + 0.5) - 0.5
            order_count[cid] = 1 + int(-math.log(1.0 - rng.random()) * (mean_orders - 0.5))

    # --- contacts
    tz_pick, plan_pick = weighted(TIMEZONES), weighted(PLANS)
    birthdays = [
        (date(1950, 1, 1) + timedelta(days=d)).isoformat()
        for d in range((date(2006, 12, 31) - date(1950, 1, 1)).days)
    ]
    created_start = now - timedelta(days=3 * 365)
    with cur.copy(
        "COPY crm_contact (id, email, external_id, first_name, last_name, phone, locale, "
        "timezone, birthday, attributes, source, channel, stage, stage_changed_at, "
        "created_at, updated_at) FROM STDIN"
    ) as copy:
        out = CopyWriter(copy)
        r = rng.random
        for cid in range(1, n + 1):
            email = f"c{cid}@example.com" if r() < 0.97 else "\\N"
            external = f"ext-{cid}" if (email == "\\N" or r() < 0.3) else "\\N"
            k = order_count[cid]
            u = r()
            if k == 0:
                stage = "subscriber" if u < 0.75 else "unengaged"
            elif k == 1:
                stage = "first_time" if u < 0.7 else ("at_risk" if u < 0.85 else "lapsed")
            elif k <= 3:
                stage = "repeat" if u < 0.75 else ("at_risk" if u < 0.9 else "lapsed")
            else:
                stage = (
                    "loyal"
                    if u < 0.75
                    else ("repeat" if u < 0.85 else ("at_risk" if u < 0.95 else "lapsed"))
                )
            attrs = {"plan": plan_pick(r()), "age": 18 + int(r() * 62)}
            if r() < 0.3:
                attrs["score"] = round(r() * 100, 1)
            if r() < 0.2:
                attrs["signup"] = (now - timedelta(days=int(r() * 700))).date().isoformat()
            created = created_start + timedelta(seconds=int(r() * 3 * 365 * 86400))
            created_s = ts(created)
            birthday = birthdays[int(r() * len(birthdays))] if r() < 0.6 else "\\N"
            phone = "+1555" + str(cid).zfill(7) if r() < 0.4 else ""
            out.add(
                f"{cid}\t{email}\t{external}\t{FIRST[int(r() * len(FIRST))]}\t"
                f"{LAST[int(r() * len(LAST))]}\t{phone}\t"
                f"{LOCALES[int(r() * len(LOCALES))]}\t{tz_pick(r())}\t{birthday}\t"
                f"{json.dumps(attrs)}\t{SOURCES[int(r() * 4)]}\t{CHANNELS[int(r() * 5)]}\t"
                f"{stage}\t{created_s}\t{created_s}\t{created_s}\n"
            )
        out.flush()
    volumes["contacts"] = n
    timings["contacts"] = time.perf_counter() - t0
    log(f"  contacts: {n:,} in {timings['contacts']:.1f} s")

    # --- tags
    t0 = time.perf_counter()
    tag_ids = {}
    for name, _ in TAGS:
        cur.execute("INSERT INTO crm_tag (name) VALUES (%s) RETURNING id", [name])
        tag_ids[name] = cur.fetchone()[0]
    links = 0
    with cur.copy("COPY crm_contact_tags (contact_id, tag_id) FROM STDIN") as copy:
        out = CopyWriter(copy)
        r = rng.random
        for cid in range(1, n + 1):
            for name, share in TAGS:
                if r() < share:
                    out.add(f"{cid}\t{tag_ids[name]}\n")
                    links += 1
        out.flush()
    volumes["contact tags"] = links
    # --- consent: email for 75% (10% of those withdrew later), sms for 5%
    records = 0
    with cur.copy(
        "COPY crm_consentrecord (contact_id, channel, topic, status, source, ip, user_agent, "
        "wording_version, recorded_at) FROM STDIN"
    ) as copy:
        out = CopyWriter(copy)
        r = rng.random
        for cid in range(1, n + 1):
            if r() < 0.75:
                at = now - timedelta(days=30 + int(r() * 900))
                out.add(f"{cid}\temail\tall\tgranted\tsignup\t\\N\t\tv1\t{ts(at)}\n")
                records += 1
                if r() < 0.10:
                    later = at + timedelta(days=1 + int(r() * 25))
                    out.add(f"{cid}\temail\tall\twithdrawn\tunsubscribe\t\\N\t\tv1\t{ts(later)}\n")
                    records += 1
            if r() < 0.05:
                at = now - timedelta(days=30 + int(r() * 900))
                out.add(f"{cid}\tsms\tall\tgranted\tcheckout\t\\N\t\tv1\t{ts(at)}\n")
                records += 1
        out.flush()
    volumes["consent records"] = records
    timings["tags + consent"] = time.perf_counter() - t0
    log(f"  tags: {links:,}, consent records: {records:,} in {timings['tags + consent']:.1f} s")

    # --- events: in time order (as ingestion writes them), by contacts with skewed activity
    t0 = time.perf_counter()
    active = list(range(1, n + 1))
    rng.shuffle(active)
    active = active[: int(n * 0.7)]  # 30% of contacts never generate events
    a = len(active)
    total_events = args.events_per_contact * n
    per_day = total_events // 365
    name_pick = weighted(EVENT_MIX)
    props = {}
    for c, cat in enumerate(CATEGORIES):
        for s in range(SKUS_PER_CATEGORY):
            sku = f"SKU-{c:02d}{s:03d}"
            price = round(5 + (c * 37 + s * 13) % 240 + 0.99, 2)
            props[("Product Viewed", c, s)] = json.dumps(
                {"category": cat, "product_id": sku, "price": price}
            )
            props[("Product Added", c, s)] = json.dumps(
                {"category": cat, "product_id": sku, "price": price, "quantity": 1 + s % 3}
            )
    page_props = [json.dumps({"path": f"/c/{cat}", "title": cat.title()}) for cat in CATEGORIES]
    page_props += [json.dumps({"path": p}) for p in ("/", "/sale", "/new", "/cart")]
    email_props = [json.dumps({"campaign_id": k, "subject": f"News #{k}"}) for k in range(60)]
    tod = [f"{h:02d}:{m:02d}:{s:02d}+00" for h in range(24) for m in range(60) for s in range(60)]
    first_day = (now - timedelta(days=365)).date()
    written = 0
    with cur.copy(COPY_EVENTS) as copy:
        out = CopyWriter(copy, chunk=50000)
        r = rng.random
        for d in range(365):
            day = (first_day + timedelta(days=d)).isoformat() + " "
            for _ in range(per_day):
                x = r()
                at = day + tod[int(r() * 86400)]
                name = name_pick(r())
                if name == "Product Viewed" or name == "Product Added":
                    cid = active[int(a * x * x)]
                    cat = favourite[cid] if r() < 0.4 else int(r() * 8)
                    p = props[(name, cat, int(r() * SKUS_PER_CATEGORY))]
                elif name == "Page Viewed":
                    cid = active[int(a * x * x)]
                    p = page_props[int(r() * len(page_props))]
                else:
                    cid = active[int(a * x * x)]
                    p = email_props[int(r() * len(email_props))]
                written += 1
                if x > 0.97 and name != "Email Opened":  # anonymous visitors
                    out.add(
                        f"\\N\tanon-{int(r() * n * 2)}\t{name}\t{p}\t{{}}\t{at}\t{at}\t"
                        f"segment\tm{written}\n"
                    )
                else:
                    out.add(f"{cid}\t\t{name}\t{p}\t{{}}\t{at}\t{at}\tapi\tm{written}\n")
            if d % 73 == 72:
                log(f"  events: {written:,} / {per_day * 365:,}")
        out.flush()
    volumes["events"] = written
    timings["events"] = time.perf_counter() - t0
    log(f"  events: {written:,} in {timings['events']:.1f} s")

    # --- orders (time order, two years) and their lines
    t0 = time.perf_counter()
    owners = [cid for cid in range(1, n + 1) for _ in range(order_count[cid])]
    rng.shuffle(owners)
    m = len(owners)
    span = 730 * 86400
    start = now - timedelta(days=730)
    line_chunks: list[str] = []
    lines_buf: list[str] = []
    line_count = 0
    with cur.copy(
        "COPY crm_order (id, external_id, contact_id, total, currency, refunded_total, status, "
        "ordered_at, source, attributes, created_at) FROM STDIN"
    ) as copy:
        out = CopyWriter(copy)
        r = rng.random
        for i, cid in enumerate(owners):
            oid = i + 1
            at = ts(start + timedelta(seconds=int((i + r()) / m * span)))
            nlines = 1 + (r() < 0.35) + (r() < 0.10)
            total = 0.0
            for _ in range(nlines):
                cat = favourite[cid] if r() < 0.5 else int(r() * 8)
                s = int(r() * SKUS_PER_CATEGORY)
                qty = 1 + (r() < 0.2)
                unit = round(math.exp(rng.gauss(3.4, 0.6)), 2)
                total += unit * qty
                lines_buf.append(
                    f"{oid}\tSKU-{cat:02d}{s:03d}\tProduct {cat:02d}{s:03d}\t"
                    f"{CATEGORIES[cat]}\t{qty}\t{unit:.2f}\n"
                )
                line_count += 1
            if len(lines_buf) >= 50000:
                line_chunks.append("".join(lines_buf))
                lines_buf = []
            currency = "USD" if r() < 0.93 else "EUR"
            u = r()
            if u < 0.92:
                status, refunded = "placed", 0.0
            elif u < 0.97:
                status, refunded = "refunded", total
            else:
                status, refunded = "partially_refunded", round(total * 0.3, 2)
            out.add(
                f"{oid}\to{oid}\t{cid}\t{total:.2f}\t{currency}\t{refunded:.2f}\t{status}\t"
                f"{at}\tapi\t{{}}\t{at}\n"
            )
        out.flush()
    line_chunks.append("".join(lines_buf))
    with cur.copy(
        "COPY crm_orderline (order_id, product_ref, name, category, quantity, unit_price) "
        "FROM STDIN"
    ) as copy:
        for chunk in line_chunks:
            copy.write(chunk)
    del line_chunks, owners
    volumes["orders"] = m
    volumes["order lines"] = line_count
    timings["orders + lines"] = time.perf_counter() - t0
    log(f"  orders: {m:,}, lines: {line_count:,} in {timings['orders + lines']:.1f} s")

    for table in ("crm_contact", "crm_order"):
        cur.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )

    t0 = time.perf_counter()
    for table in big:
        restore_secondary(cur, table, saved[table])
        log(f"  indexes and constraints of {table} rebuilt")
    timings["indexes + constraints"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cur.execute("VACUUM ANALYZE")
    timings["vacuum analyze"] = time.perf_counter() - t0
    log(f"  VACUUM ANALYZE in {timings['vacuum analyze']:.1f} s")
    conn.close()
    return {"timings": timings, "volumes": volumes}


# ------------------------------------------------------------------------------------------
# Phase 2+: measurements (Django)
# ------------------------------------------------------------------------------------------
def median_time(fn, runs: int = 3):
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def explain_count(q, analyze: bool = True) -> str:
    from django.db import connection

    from crm.models import Contact

    sql, params = Contact.objects.filter(q).order_by().values("pk").query.sql_with_params()
    options = "ANALYZE, BUFFERS" if analyze else "COSTS"
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN ({options}) SELECT count(*) FROM ({sql}) s", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    return plan if analyze else "(plan only: the query did not finish in time)\n" + plan


def bounded_count(q, timeout: float):
    """(seconds, count) of one count under a statement timeout, or (None, message)."""
    from django.db import connection
    from django.db.utils import OperationalError

    from crm.models import Contact

    with connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = '{int(timeout * 1000)}'")
    t0 = time.perf_counter()
    try:
        count = Contact.objects.filter(q).count()
        result = (time.perf_counter() - t0, count)
    except OperationalError as exc:
        result = (None, f"not finished in {timeout:.0f} s ({type(exc).__name__})")
    with connection.cursor() as cursor:
        set_statement_timeout(cursor)
    return result


# --- naive evaluation: per contact, in Python, with one ORM query per condition -----------
def naive_match(contact, node, now) -> bool:
    from decimal import Decimal

    from django.conf import settings

    from crm.models import ConsentRecord, ContactRfm, Event, Order, OrderLine

    if "all" in node:
        return all(naive_match(contact, c, now) for c in node["all"])
    if "any" in node:
        return any(naive_match(contact, c, now) for c in node["any"])
    if "not" in node:
        return not naive_match(contact, node["not"], now)
    kind, op = node["type"], node.get("op")
    if kind == "field":
        value = getattr(contact, node["field"])
        if op == "in":
            return value in node["value"]
        if op == "not_in":
            return value not in node["value"]
        if op == "eq":
            return (value or "").lower() == node["value"].lower()
        raise NotImplementedError(op)
    if kind == "attribute":
        attrs = contact.attributes or {}
        if op == "eq":
            return node["key"] in attrs and attrs[node["key"]] == node["value"]
        if op == "in":
            return node["key"] in attrs and attrs[node["key"]] in node["value"]
        if op in ("gt", "gte", "lt", "lte"):
            v = attrs.get(node["key"])
            if not isinstance(v, int | float) or isinstance(v, bool):
                return False
            return {
                "gt": v > node["value"],
                "gte": v >= node["value"],
                "lt": v < node["value"],
                "lte": v <= node["value"],
            }[op]
        raise NotImplementedError(op)
    if kind == "tag":
        has = contact.tags.filter(name=node["value"]).exists()
        return has if op == "has" else not has
    if kind == "event":
        events = Event.objects.filter(contact_id=contact.pk, name=node["name"])
        if node.get("days"):
            events = events.filter(occurred_at__gte=now - timedelta(days=node["days"]))
        for key, value in (node.get("where") or {}).items():
            events = events.filter(**{f"properties__{key}": value})
        count = events.count()
        if op == "at_least":
            return count >= node["count"]
        if op == "at_most":
            return count <= node["count"]
        return count == 0
    if kind == "order":
        measure, value = node["measure"], Decimal(str(node["value"]))
        rows = Order.objects.filter(contact_id=contact.pk).exclude(status="refunded")
        if measure == "count":
            v = Decimal(rows.count())
        else:
            v = sum(
                (
                    o.total - o.refunded_total
                    for o in rows.filter(currency=settings.KEEPERS_BASE_CURRENCY)
                ),
                Decimal(0),
            )
        return {
            "gt": v > value,
            "gte": v >= value,
            "lt": v < value,
            "lte": v <= value,
            "eq": v == value,
        }[op]
    if kind == "rfm":
        row = ContactRfm.objects.filter(contact_id=contact.pk).first()
        inside = row is not None and row.rfm_group in node["value"]
        return inside if op == "in" else not inside
    if kind == "consent":
        status = (
            ConsentRecord.objects.filter(
                contact_id=contact.pk, channel=node.get("channel", "email"), topic="all"
            )
            .order_by("-recorded_at", "-id")
            .values_list("status", flat=True)
            .first()
        ) or "none"
        return (status == node["value"]) == (op == "is")
    if kind == "bought":
        found = (
            OrderLine.objects.filter(
                order__contact_id=contact.pk, category__iexact=node["category"]
            )
            .exclude(order__status="refunded")
            .exists()
        )
        return found if node.get("op", "yes") == "yes" else not found
    raise NotImplementedError(kind)


def naive_count(rules, sample_ids: list[int], now) -> tuple[float, int]:
    from crm.models import Contact

    t0 = time.perf_counter()
    matched = 0
    for contact in Contact.objects.filter(pk__in=sample_ids).iterator(chunk_size=2000):
        if naive_match(contact, rules, now):
            matched += 1
    return time.perf_counter() - t0, matched


# --- rules ---------------------------------------------------------------------------------
SHOES_3_IN_30 = {
    "type": "event",
    "name": "Product Viewed",
    "op": "at_least",
    "count": 3,
    "days": 30,
    "where": {"category": "shoes"},
}
FIVE_RULES = [
    (
        "1. field + attribute",
        "timezone in [Europe/Paris, Europe/Berlin] and attribute plan = gold",
        {
            "all": [
                {
                    "type": "field",
                    "field": "timezone",
                    "op": "in",
                    "value": ["Europe/Paris", "Europe/Berlin"],
                },
                {"type": "attribute", "key": "plan", "op": "eq", "value": "gold"},
            ]
        },
    ),
    (
        "2. event",
        "Product Viewed ≥ 3 times in 30 days where category = shoes",
        SHOES_3_IN_30,
    ),
    (
        "3. order",
        "total_spend > 500",
        {"type": "order", "measure": "total_spend", "op": "gt", "value": 500},
    ),
    (
        "4. RFM",
        "RFM group in [champions, loyal]",
        {"type": "rfm", "score": "group", "op": "in", "value": ["champions", "loyal"]},
    ),
    (
        "5. nested",
        "stage in [repeat, loyal] and (shoes ≥ 3 in 30 d or not tag vip)",
        {
            "all": [
                {"type": "field", "field": "stage", "op": "in", "value": ["repeat", "loyal"]},
                {"any": [SHOES_3_IN_30, {"not": {"type": "tag", "op": "has", "value": "vip"}}]},
            ]
        },
    ),
]
# Informational: other condition families and the negated / zero-aware shapes.
EXTRA_RULES = [
    ("consent granted", {"type": "consent", "op": "is", "value": "granted"}),
    ("bought shoes", {"type": "bought", "category": "shoes"}),
    ("tag has_not vip", {"type": "tag", "op": "has_not", "value": "vip"}),
    (
        "no Page Viewed in 30 d",
        {"type": "event", "name": "Page Viewed", "op": "none", "days": 30},
    ),
    (
        "≤ 2 Product Viewed in 90 d",
        {"type": "event", "name": "Product Viewed", "op": "at_most", "count": 2, "days": 90},
    ),
    ("total_spend < 100", {"type": "order", "measure": "total_spend", "op": "lt", "value": 100}),
    ("order count = 0", {"type": "order", "measure": "count", "op": "eq", "value": 0}),
    (
        "last order within 90 d",
        {"type": "order", "measure": "last_order_at", "op": "within_last_days", "value": 90},
    ),
]


def fifty_rules() -> list[tuple[str, dict]]:
    """50 varied segments over profile, events, orders, RFM, tags, consent and nesting."""
    rules: list[tuple[str, dict]] = []
    for tz, _ in TIMEZONES[:6]:
        rules.append((f"tz {tz}", {"type": "field", "field": "timezone", "op": "eq", "value": tz}))
    for plan, _ in PLANS:
        rules.append(
            (f"plan {plan}", {"type": "attribute", "key": "plan", "op": "eq", "value": plan})
        )
    rules.append(
        (
            "age 30-39",
            {
                "all": [
                    {"type": "attribute", "key": "age", "op": "gte", "value": 30},
                    {"type": "attribute", "key": "age", "op": "lt", "value": 40},
                ]
            },
        )
    )
    rules.append(
        ("channel social", {"type": "field", "field": "channel", "op": "eq", "value": "social"})
    )
    rules.append(
        ("stage loyal", {"type": "field", "field": "stage", "op": "in", "value": ["loyal"]})
    )
    rules.append(
        (
            "at risk or lapsed",
            {"type": "field", "field": "stage", "op": "in", "value": ["at_risk", "lapsed"]},
        )
    )
    for cat in CATEGORIES:
        rules.append(
            (
                f"viewed {cat} ≥2 in 30d",
                {
                    "type": "event",
                    "name": "Product Viewed",
                    "op": "at_least",
                    "count": 2,
                    "days": 30,
                    "where": {"category": cat},
                },
            )
        )
    for days in (7, 30, 90):
        rules.append(
            (
                f"added to cart in {days}d",
                {
                    "type": "event",
                    "name": "Product Added",
                    "op": "at_least",
                    "count": 1,
                    "days": days,
                },
            )
        )
    rules.append(
        (
            "pages ≥10 in 30d",
            {"type": "event", "name": "Page Viewed", "op": "at_least", "count": 10, "days": 30},
        )
    )
    rules.append(
        (
            "opened email in 30d",
            {"type": "event", "name": "Email Opened", "op": "at_least", "count": 1, "days": 30},
        )
    )
    for amount in (100, 250, 500, 1000):
        rules.append(
            (
                f"spend > {amount}",
                {"type": "order", "measure": "total_spend", "op": "gt", "value": amount},
            )
        )
    for k in (2, 5):
        rules.append(
            (f"orders ≥ {k}", {"type": "order", "measure": "count", "op": "gte", "value": k})
        )
    rules.append(
        (
            "spend 90d ≥ 200",
            {"type": "order", "measure": "spend_last_days", "op": "gte", "value": 200, "days": 90},
        )
    )
    rules.append(
        (
            "last order 30d",
            {"type": "order", "measure": "last_order_at", "op": "within_last_days", "value": 30},
        )
    )
    rules.append(
        ("aov > 80", {"type": "order", "measure": "average_order_value", "op": "gt", "value": 80})
    )
    for groups in (
        ["champions"],
        ["loyal", "potential_loyalist"],
        ["at_risk", "cant_lose"],
        ["hibernating", "lost"],
    ):
        rules.append(
            (
                f"rfm {'/'.join(groups)}",
                {"type": "rfm", "score": "group", "op": "in", "value": groups},
            )
        )
    for tag in ("vip", "newsletter", "wholesale"):
        rules.append((f"tag {tag}", {"type": "tag", "op": "has", "value": tag}))
    rules.append(("email consent", {"type": "consent", "op": "is", "value": "granted"}))
    rules.append(("bought coffee", {"type": "bought", "category": "coffee"}))
    rules.append(
        (
            "gold shoe lovers",
            {
                "all": [
                    {"type": "attribute", "key": "plan", "op": "in", "value": ["gold", "silver"]},
                    SHOES_3_IN_30,
                ]
            },
        )
    )
    rules.append(("nested five", FIVE_RULES[4][2]))
    rules.append(
        (
            "big spenders not vip",
            {
                "all": [
                    {"type": "order", "measure": "total_spend", "op": "gt", "value": 300},
                    {"not": {"type": "tag", "op": "has", "value": "vip"}},
                ]
            },
        )
    )
    rules.append(
        (
            "paris browsers",
            {
                "all": [
                    {"type": "field", "field": "timezone", "op": "in", "value": ["Europe/Paris"]},
                    {
                        "any": [
                            {
                                "type": "event",
                                "name": "Product Viewed",
                                "op": "at_least",
                                "count": 1,
                                "days": 7,
                            },
                            {
                                "type": "event",
                                "name": "Product Added",
                                "op": "at_least",
                                "count": 1,
                                "days": 30,
                            },
                        ]
                    },
                ]
            },
        )
    )
    rules.append(
        (
            "repeat buyers, opened email",
            {
                "all": [
                    {"type": "order", "measure": "count", "op": "gte", "value": 3},
                    {
                        "type": "event",
                        "name": "Email Opened",
                        "op": "at_least",
                        "count": 1,
                        "days": 90,
                    },
                ]
            },
        )
    )
    return rules[:50]


def make_segment(name: str, rules: dict):
    from crm.models import Segment
    from crm.services.segments import segment_validate

    depends_on, time_based = segment_validate(rules=rules, kind="dynamic", segment_id=None)
    return Segment.objects.create(
        name=name, kind="dynamic", rules=rules, depends_on=depends_on, time_based=time_based
    )


class RefreshProfile:
    """Wraps crm.services.segments._apply / _announce (timing only; they still run) to split
    a refresh's time between the set-based SQL and the announcing of entries and exits."""

    def __init__(self):
        import crm.services.segments as mod

        self.mod = mod
        self.orig_apply, self.orig_announce = mod._apply, mod._announce
        self.reset()

        def apply(*a, **k):
            t0 = time.perf_counter()
            try:
                result = self.orig_apply(*a, **k)
            finally:
                self.apply_s += time.perf_counter() - t0
            self.entered += len(result.entered)
            self.exited += len(result.exited)
            return result

        def announce(*a, **k):
            t0 = time.perf_counter()
            try:
                return self.orig_announce(*a, **k)
            finally:
                self.announce_s += time.perf_counter() - t0

        mod._apply, mod._announce = apply, announce

    def reset(self):
        self.apply_s = self.announce_s = 0.0
        self.entered = self.exited = 0

    def close(self):
        self.mod._apply, self.mod._announce = self.orig_apply, self.orig_announce


class LoadSampler:
    """/proc/loadavg every few seconds, to show how busy the shared machine was."""

    def __init__(self, every: float = 5.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            with open("/proc/loadavg") as f:
                self.samples.append(float(f.read().split()[0]))
            self._stop.wait(every)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        x = self.samples or [0.0]
        return {"min": min(x), "mean": sum(x) / len(x), "max": max(x)}


def code_version() -> dict:
    """The commit and whether the app code differs from it (others edit concurrently)."""

    dirty = git("status", "--porcelain", "--", "crm", "config").strip()
    return {
        "commit": git("log", "-1", "--format=%h %s").strip()[:100],
        "dirty": [line[3:] for line in dirty.splitlines()],
    }


class Budget:
    """Bounds a call that runs many statements: after `seconds`, cancel this process's own
    backend (pg_cancel_backend on its pid, every 2 s until the call returns)."""

    def __init__(self, seconds: float):
        self.seconds, self.fired = seconds, False
        self._done = threading.Event()

    def __enter__(self):
        from django.db import connection

        pid = backend_pid()
        name = connection.settings_dict["NAME"]

        def watch():
            if self._done.wait(self.seconds):
                return
            with pg(name, autocommit=True) as conn:
                while not self._done.is_set():
                    self.fired = True
                    conn.execute("SELECT pg_cancel_backend(%s)", [pid])
                    self._done.wait(2)

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        return False


def attempt(fn, budget: float):
    """(seconds, result) of fn() within a budget, or (None, error text) when cancelled."""
    from django.db import DatabaseError

    t0 = time.perf_counter()
    try:
        with Budget(budget):
            result = fn()
    except DatabaseError as exc:
        return None, f"cancelled after {time.perf_counter() - t0:.0f} s ({type(exc).__name__})"
    return time.perf_counter() - t0, result


def analyze(table: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")


def reset_measurement_state() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE crm_segmentmembership, crm_segmentsnapshot")
        cursor.execute("DELETE FROM crm_segment")
        cursor.execute("TRUNCATE crm_contactchange")
        cursor.execute("DELETE FROM crm_event WHERE source IN ('bench-ingest', 'bench-incr')")
        cursor.execute(
            "DELETE FROM crm_orderline WHERE order_id IN "
            "(SELECT id FROM crm_order WHERE source = 'bench-incr')"
        )
        cursor.execute("DELETE FROM crm_order WHERE source = 'bench-incr'")


def vacuum(tables: list[str]) -> None:
    from django.conf import settings

    with pg(settings.DATABASES["default"]["NAME"], autocommit=True) as conn:
        for table in tables:
            conn.execute(f"VACUUM ANALYZE {table}")


def refresh_pair(profile, segment_id: int, budget: float) -> dict:
    """First and second full refresh of a new segment, each bounded by `budget`."""
    from crm.services.segments import segment_refresh

    out = {}
    for run in ("first", "second"):
        profile.reset()
        seconds, result = attempt(lambda: segment_refresh(segment_id=segment_id), budget)
        out[run] = {
            "s": seconds,
            "error": None if seconds is not None else result,
            "sql_s": profile.apply_s,
            "announce_s": profile.announce_s,
            "entered": profile.entered if seconds is not None else 0,
        }
        if seconds is None:
            break
    return out


def fmt_run(run: dict | None) -> str:
    if not run:
        return "—"
    if run["s"] is None:
        return f"**{run['error']}**"
    return f"{fmt_s(run['s'])} ({fmt_s(run['sql_s'])} + {fmt_s(run['announce_s'])})"


def measure(args) -> dict:
    from django.db import connection

    from crm import clock
    from crm.models import Contact, ContactChange, Segment, SegmentMembership
    from crm.rules import compile_rules
    from crm.services.changes import changes_mark
    from crm.services.contacts import Identity
    from crm.services.events import EventIn, events_ingest
    from crm.services.rfm import rfm_recompute
    from crm.services.segments import segment_refresh, segments_refresh_changed

    out: dict = {"rules": [], "extras": [], "explain": {}}
    reset_measurement_state()
    n = Contact.objects.count()
    out["contacts"] = n
    rng = random.Random(args.seed + 1)
    budget = args.refresh_budget

    seconds, scored = attempt(rfm_recompute, args.rfm_budget)
    out["rfm"] = {"s": seconds, "error": None if seconds is not None else scored}
    out["rfm_scored"] = scored if seconds is not None else 0
    vacuum(["crm_contactrfm"])
    log(f"rfm_recompute: {fmt_s(seconds) if seconds is not None else scored}")

    ids = list(Contact.objects.values_list("pk", flat=True))
    sample = sorted(rng.sample(ids, min(args.sample, len(ids))))
    scale = n / len(sample)
    profile = RefreshProfile()

    # --- 1. the five rules: count and the naive loop
    for label, text, rules in FIVE_RULES:
        now = clock.now()
        q = compile_rules(rules, now=now).q
        Contact.objects.filter(q).count()  # warm
        count_s, count = median_time(lambda q=q: Contact.objects.filter(q).count())
        sample_sql = Contact.objects.filter(q, pk__in=sample).count()
        naive_s, naive_matched = naive_count(rules, sample, now)
        out["rules"].append(
            {
                "label": label,
                "text": text,
                "rules": rules,
                "count": count,
                "count_s": count_s,
                "naive_sample_s": naive_s,
                "naive_extrapolated_s": naive_s * scale,
                "naive_matched": naive_matched,
                "sql_sample_matched": sample_sql,
                "ratio": (naive_s * scale) / count_s if count_s else None,
            }
        )
        if count_s > 2.0:
            out["explain"][f"count of {label}"] = explain_count(q)
        log(
            f"{label}: {count:,} members, count {fmt_s(count_s)}, naive {fmt_s(naive_s)} on "
            f"{len(sample):,} → {fmt_s(naive_s * scale)} (sample: naive {naive_matched}, "
            f"sql {sample_sql})"
        )

    # --- 2. other shapes (count only): one bounded try first, the median only when quick
    for label, rules in EXTRA_RULES:
        q = compile_rules(rules).q
        count_s, count = bounded_count(q, args.extra_timeout)
        if count_s is not None and count_s < 10:
            count_s, count = median_time(lambda q=q: Contact.objects.filter(q).count())
        out["extras"].append({"label": label, "rules": rules, "count": count, "count_s": count_s})
        if count_s is None or count_s > 2.0:
            out["explain"][f"count of {label}"] = explain_count(q, analyze=count_s is not None)
        log(f"extra {label}: {count} in {fmt_s(count_s)}")

    # --- 3. first refresh on a fresh install: the membership table's statistics are those
    #        of an empty table (as after migrate + VACUUM ANALYZE, before autovacuum runs)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT spend FROM (SELECT contact_id, SUM(total - refunded_total) AS spend "
            "FROM crm_order WHERE status <> 'refunded' AND currency = 'USD' GROUP BY contact_id) s "
            "ORDER BY spend DESC OFFSET %s LIMIT 1",
            [n // 10],
        )
        threshold = float(cursor.fetchone()[0])
    tuned = {"type": "order", "measure": "total_spend", "op": "gt", "value": threshold}
    vacuum(["crm_segmentmembership"])
    out["fresh"] = []
    for label, rules in (("2. event", FIVE_RULES[1][2]), ("10%", tuned)):
        segment = make_segment(f"bench fresh {label}", rules)
        run = refresh_pair(profile, segment.pk, budget)
        out["fresh"].append({"label": label, "rules": rules, "run": run})
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM crm_segmentmembership WHERE segment_id = %s", [segment.pk])
            cursor.execute("DELETE FROM crm_segmentsnapshot WHERE segment_id = %s", [segment.pk])
            cursor.execute("DELETE FROM crm_segment WHERE id = %s", [segment.pk])
            cursor.execute("TRUNCATE crm_contactchange")
        vacuum(["crm_segmentmembership"])
        log(
            f"fresh-install refresh {label}: first {fmt_run(run['first'])}, "
            f"second {fmt_run(run.get('second'))}"
        )

    # --- 4. fifty active segments: the first full refresh of each, then ANALYZE
    fifty, failed = [], []
    profile.reset()
    t0 = time.perf_counter()
    for name, rules in fifty_rules():
        segment = make_segment(name, rules)
        fifty.append(segment.pk)
        seconds, err = attempt(
            lambda pk=segment.pk: segment_refresh(segment_id=pk), args.populate_budget
        )
        if seconds is None:
            failed.append(f"{name}: {err}")
    out["populate"] = {
        "s": time.perf_counter() - t0,
        "sql_s": profile.apply_s,
        "announce_s": profile.announce_s,
        "failed": failed,
        "members": SegmentMembership.objects.filter(exited_at__isnull=True).count(),
    }
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE crm_contactchange")
    vacuum(["crm_segmentmembership", "crm_contactchange", "crm_segment"])
    log(
        f"50 segments, first full refresh: {fmt_s(out['populate']['s'])} "
        f"({out['populate']['members']:,} memberships; {len(failed)} cancelled)"
    )

    # --- 5. full refresh of the five rules and of a ~10% segment, each a new segment
    #        (first run: every member enters; second: no-op)
    targets = [(r["label"], r) for r in out["rules"]]
    out["tuned"] = {"label": "10%", "rules": tuned}
    targets.append(("10%", out["tuned"]))
    for label, row in targets:
        segment = make_segment(f"bench {label}", row["rules"])
        row["run"] = refresh_pair(profile, segment.pk, budget)
        row["members"] = SegmentMembership.objects.filter(
            segment=segment, exited_at__isnull=True
        ).count()
        Segment.objects.filter(pk=segment.pk).update(is_active=False)
        slow = [r for r in row["run"].values() if r["s"] is None or r["s"] > 10]
        if slow and f"count of {label}" not in out["explain"]:
            out["explain"][f"members of {label} (slow refresh)"] = explain_count(
                compile_rules(row["rules"]).q, analyze=all(r["s"] is not None for r in slow)
            )
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE crm_contactchange")
        log(
            f"refresh {label}: first {fmt_run(row['run']['first'])}, "
            f"second {fmt_run(row['run'].get('second'))}, {row['members']:,} members"
        )

    # --- 6. the hourly full refresh of the 50 (nothing changes)
    def refresh_fifty():
        for pk in fifty:
            segment_refresh(segment_id=pk)

    profile.reset()
    seconds, err = attempt(refresh_fifty, args.refresh_all_budget)
    out["refresh_all"] = {"s": seconds, "error": None if seconds else err, "sql_s": profile.apply_s}
    log(f"50 segments, no-op full refresh: {fmt_s(seconds) if seconds else err}")

    # --- 7. the incremental pass for 1,000 changed contacts
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE crm_contactchange")
    changed = rng.sample(ids, min(args.changed, len(ids)))
    pairs = change_contacts(changed, rng, clock.now())
    changes_mark(pairs)
    marks = ContactChange.objects.count()
    profile.reset()
    seconds, result = attempt(segments_refresh_changed, args.pass_budget)
    inc = {
        "contacts": len(changed),
        "segments": len(fifty),
        "marks": marks,
        "s": seconds,
        "error": None if seconds is not None else result,
        "sql_s": profile.apply_s,
        "announce_s": profile.announce_s,
        "entered": profile.entered if seconds is not None else 0,
        "exited": profile.exited if seconds is not None else 0,
    }
    if seconds is not None:
        follow_marks = ContactChange.objects.count()
        follow_s, _ = attempt(segments_refresh_changed, args.pass_budget)
        inc.update(follow_marks=follow_marks, follow_s=follow_s)
    out["incremental"] = inc
    log(
        f"incremental: {marks:,} marks, {fmt_s(seconds) if seconds is not None else result} "
        f"(sql {fmt_s(inc['sql_s'])}, {inc['entered']} entered, {inc['exited']} exited)"
    )
    if seconds is None or seconds > 2:
        out["explain"]["incremental pass"] = explain_incremental(fifty, pairs)

    # --- 8. ingestion with 0 and with 50 active segments
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE crm_contactchange")
    emails = [f"c{cid}@example.com" for cid in rng.sample(ids, min(20000, len(ids)))]
    existing = set(Contact.objects.filter(email__in=emails).values_list("email", flat=True))
    emails = [e for e in emails if e in existing]

    def batch(tag: str, size: int) -> list:
        items = []
        at = clock.now()
        for i in range(size):
            name = ["Product Viewed", "Page Viewed", "Product Added"][rng.randrange(3)]
            props = (
                {"category": CATEGORIES[rng.randrange(8)], "product_id": f"SKU-{i}"}
                if name != "Page Viewed"
                else {"path": "/"}
            )
            items.append(
                EventIn(
                    name=name,
                    identity=Identity(email=emails[rng.randrange(len(emails))]),
                    properties=props,
                    occurred_at=at,
                    message_id=f"{tag}-{i}",
                    source="bench-ingest",
                )
            )
        return items

    per_round = args.ingest_events // 4
    batches_per_round = max(1, per_round // 1000)
    events_ingest(batch("warmup", 1000), source="bench-ingest")
    results = {0: [0, 0.0], len(fifty): [0, 0.0]}
    for rnd in range(4):  # ABBA order, so a drift (growing tables) weighs on both alike
        for active in (0, len(fifty)) if rnd % 2 == 0 else (len(fifty), 0):
            Segment.objects.filter(pk__in=fifty).update(is_active=bool(active))
            prepared = [batch(f"r{rnd}-{active}-{b}", 1000) for b in range(batches_per_round)]
            t0 = time.perf_counter()
            for items in prepared:
                events_ingest(items, source="bench-ingest")
            elapsed = time.perf_counter() - t0
            results[active][0] += sum(len(b) for b in prepared)
            results[active][1] += elapsed
            log(
                f"ingest round {rnd + 1}, {active} active segments: "
                f"{sum(len(b) for b in prepared):,} events in {elapsed:.2f} s"
            )
    Segment.objects.filter(pk__in=fifty).update(is_active=True)
    out["ingest"] = {
        k: {"events": v[0], "seconds": v[1], "rate": v[0] / v[1]} for k, v in results.items()
    }
    # the pass that consumes the marks ingestion queued (up to 50,000 marks a pass)
    backlog = ContactChange.objects.count()
    seconds, result = attempt(segments_refresh_changed, args.pass_budget)
    out["drain"] = {
        "marks": backlog,
        "consumed": result if seconds is not None else 0,
        "s": seconds,
        "error": None if seconds is not None else result,
    }
    log(f"pass over ingestion marks ({backlog:,} queued): {fmt_s(seconds) if seconds else result}")
    profile.close()
    return out


def change_contacts(changed: list[int], rng: random.Random, now: datetime) -> list:
    """Real changes for the sampled contacts (new events, orders, profile edits); returns
    the (contact_id, kind) marks ingestion would have written."""
    from django.db import connection

    pairs: list[tuple[int, str]] = []
    event_rows, order_rows, profile_ids = [], [], []
    for k, cid in enumerate(changed):
        u = rng.random()
        if u < 0.5:
            for j in range(1 + rng.randrange(4)):
                cat = CATEGORIES[rng.randrange(8)] if rng.random() < 0.5 else "shoes"
                event_rows.append(
                    (cid, "Product Viewed", json.dumps({"category": cat}), f"{k}-{j}")
                )
            pairs.append((cid, "event:Product Viewed"))
        elif u < 0.7:
            event_rows.append((cid, "Page Viewed", json.dumps({"path": "/sale"}), f"{k}-p"))
            pairs.append((cid, "event:Page Viewed"))
        elif u < 0.85:
            order_rows.append((cid, f"incr-{k}", round(50 + rng.random() * 400, 2)))
            pairs.append((cid, "order"))
        else:
            profile_ids.append(cid)
            pairs.append((cid, "profile"))
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO crm_event (contact_id, anonymous_id, name, properties, context, "
            "occurred_at, received_at, source, message_id) "
            "VALUES (%s, '', %s, %s::jsonb, '{}', %s, %s, 'bench-incr', %s)",
            [[cid, name, props, now, now, mid] for cid, name, props, mid in event_rows],
        )
        cursor.executemany(
            "INSERT INTO crm_order (external_id, contact_id, total, currency, refunded_total, "
            "status, ordered_at, source, attributes, created_at) "
            "VALUES (%s, %s, %s, 'USD', 0, 'placed', %s, 'bench-incr', '{}', %s)",
            [[ext, cid, total, now, now] for cid, ext, total in order_rows],
        )
        cursor.execute(
            'UPDATE crm_contact SET attributes = attributes || \'{"plan": "gold"}\', '
            "timezone = 'Europe/Paris', updated_at = %s WHERE id = ANY(%s)",
            [now, profile_ids],
        )
    return pairs


def explain_incremental(fifty: list[int], pairs) -> str:
    """Time the scoped members query of each affected segment (as the pass builds it) and
    EXPLAIN ANALYZE the slowest."""
    from django.db import connection

    from crm import clock
    from crm.models import Segment
    from crm.services.segments import _affected, _members_sql

    changed_by_kind: dict[str, set[int]] = {}
    for cid, kind in pairs:
        changed_by_kind.setdefault(kind, set()).add(cid)
    now = clock.now()
    timings = []
    for segment in Segment.objects.filter(pk__in=fifty).order_by("pk"):
        ids = sorted(_affected(segment, changed_by_kind))
        if not ids:
            continue
        sql, params = _members_sql(segment, now, ids)
        t0 = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM ({sql}) s", params)
        timings.append((time.perf_counter() - t0, segment, ids, sql, params))
    timings.sort(key=lambda t: -t[0])
    lines = ["Members query of each affected segment, scoped to its changed contacts:"]
    lines += [f"- {fmt_s(t[0])}  {t[1].name} ({len(t[2])} contacts)" for t in timings[:10]]
    lines.append(f"- … {len(timings)} segments, {fmt_s(sum(t[0] for t in timings))} in all")
    if timings:
        _, segment, _, sql, params = timings[0]
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM ({sql}) s", params)
            lines.append(f"\nThe slowest, '{segment.name}' (EXPLAIN ANALYZE):")
            lines += [row[0] for row in cursor.fetchall()]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
PG_SETTINGS = (
    "shared_buffers",
    "work_mem",
    "hash_mem_multiplier",
    "effective_cache_size",
    "max_parallel_workers_per_gather",
    "jit",
)


def report(args, info: dict, load: dict | None, res: dict, total_s: float) -> str:
    n = res["contacts"]
    code, code_end = info["code"], info["code_end"]
    dirty = f"; uncommitted changes in {', '.join(code['dirty'])}" if code["dirty"] else ""
    moved = (
        ""
        if code_end == code
        else f" (**the code changed during the run**: at the end {code_end['commit']})"
    )
    cpu = info["load_samples"]
    lines = [
        "# Segments benchmark",
        "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} with "
        f"`{' '.join(['.venv/bin/python', 'bench/segments.py', *sys.argv[1:]])}` "
        f"({total_s / 60:.0f} min in all), on commit {code['commit']}{dirty}{moved}.",
        "",
        "## Machine",
        "",
        f"- {info['nproc']} cores ({info['cpu']}), {info['ram_gb']} GB RAM, Python "
        f"{info['python']}. **Shared**: other benchmarks and test suites ran at the same time; "
        f"the 1-minute load average during the run was {cpu['min']:.1f}–{cpu['max']:.1f} "
        f"(mean {cpu['mean']:.1f}) on 2 cores, so timings carry that noise.",
        f"- PostgreSQL {info['pg']} on 127.0.0.1, stock settings: "
        + ", ".join(f"{k} = {v}" for k, v in info["pg_settings"].items())
        + ". The benchmark ANALYZEs what it loads and writes, as autovacuum would.",
        "- Django settings `config.settings.dev` with DEBUG off, database "
        f"`{args.db}`; times are wall-clock in this one process (client + server).",
        "",
        "## Data",
        "",
    ]
    if load:
        vol = load["volumes"]
        lines += [
            "| table | rows |",
            "|---|---:|",
            *[f"| {k} | {v:,} |" for k, v in vol.items()],
            f"| RFM scores (customers) | {res['rfm_scored']:,} |",
            "",
            "Load (COPY from Python, secondary indexes and foreign keys dropped during the "
            "load and recreated after, then VACUUM ANALYZE): "
            + ", ".join(f"{k} {fmt_s(v)}" for k, v in load["timings"].items())
            + f"; **{fmt_s(sum(load['timings'].values()))}** in all.",
            "",
            "Shape: 45% of contacts are customers (orders per customer exponential, mean "
            f"{args.orders_per_contact / 0.45:.1f}; 93% USD, 5% refunded, 3% partly refunded); "
            "70% of contacts generate events, with a skewed activity (a few heavy users), 40% of "
            "product events in the contact's favourite category; events and orders are written "
            "in time order, as ingestion writes them; 3% of web events are anonymous.",
            "",
        ]
    else:
        lines += [f"Reused the loaded database ({n:,} contacts; `--skip-load`).", ""]
    rfm = res["rfm"]
    lines += [
        "`rfm_recompute()`: "
        + (fmt_s(rfm["s"]) if rfm["s"] is not None else f"**{rfm['error']}**")
        + ".",
        "",
    ]

    rules, t = res["rules"], res["tuned"]
    inc, ing = res["incremental"], res["ingest"]
    zero, fifty = ing[0], ing[max(ing)]
    ing_ratio = fifty["rate"] / zero["rate"]
    sample = min(args.sample, n)
    lines += [
        "## Results",
        "",
        "*Count*: `Contact.objects.filter(compile_rules(rules).q).count()`, warm, median of 3. "
        "*Full refresh*: `segment_refresh()` of a new segment; first = every member enters, "
        "second = nothing changes; in brackets the set-based SQL (`_apply`) + announcing "
        "(`_announce`); the rest is locking, the snapshot and the commit. *Naive*: per contact, "
        "one ORM query per condition in a Python loop over a random sample of "
        f"{sample:,} contacts, extrapolated ×{n / sample:,.0f}; ratio = naive (extrapolated) / "
        "SQL count; *check* = the naive loop and SQL find the same members in the sample.",
        "",
        "| rule | members | count | full refresh, first | full refresh, no-op "
        "| naive, sample → all | naive / SQL | check |",
        "|---|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for r in rules:
        check = (
            "same"
            if r["naive_matched"] == r["sql_sample_matched"]
            else f"**{r['naive_matched']} vs {r['sql_sample_matched']}**"
        )
        lines.append(
            f"| {r['label']}: {r['text']} | {r['count']:,} | {fmt_s(r['count_s'])} | "
            f"{fmt_run(r['run']['first'])} | {fmt_run(r['run'].get('second'))} | "
            f"{fmt_s(r['naive_sample_s'])} → {fmt_s(r['naive_extrapolated_s'])} | "
            f"{r['ratio']:,.0f}× | {check} |"
        )

    def ok(run, limit) -> bool:
        return bool(run) and run["s"] is not None and run["s"] < limit

    slowest = max(rules, key=lambda r: r["count_s"])
    inc_text = (
        f"{fmt_s(inc['s'])} (SQL {fmt_s(inc['sql_s'])}; {inc['entered']} entered, "
        f"{inc['exited']} exited)"
        if inc["s"] is not None
        else f"**{inc['error']}**"
    )
    lines += [
        "",
        "| target | measured | result |",
        "|---|---:|:-:|",
        f"| count any of the five rules over {n:,} contacts < 2 s | slowest: "
        f"{slowest['label']} {fmt_s(slowest['count_s'])} | {verdict(slowest['count_s'] < 2)} |",
        f"| full refresh of a {t['members']:,}-member segment (`total_spend > "
        f"{t['rules']['value']:.2f}`) < 10 s | first {fmt_run(t['run']['first'])}; no-op "
        f"{fmt_run(t['run'].get('second'))} | "
        f"{verdict(ok(t['run']['first'], 10) and ok(t['run'].get('second'), 10))} |",
        f"| incremental pass, {inc['contacts']:,} changed contacts ({inc['marks']:,} marks) "
        f"across {inc['segments']} segments < 2 s | {inc_text} | "
        f"{verdict(inc['s'] is not None and inc['s'] < 2)} |",
        f"| ingestion with 50 active segments no slower than with none | "
        f"{fifty['rate']:,.0f} vs {zero['rate']:,.0f} events/s ({ing_ratio:.2f}×) | "
        f"{verdict(ing_ratio >= 0.9)} |",
        "",
        "Incremental: the 1,000 contacts really changed first (new Product Viewed / Page "
        "Viewed events, new orders, profile edits), then `changes_mark()` and one "
        "`segments_refresh_changed()`"
        + (
            f"; the follow-up pass for the {inc['follow_marks']} `segment:<id>` marks it left "
            f"took {fmt_s(inc['follow_s'])}"
            if inc.get("follow_marks") is not None
            else ""
        )
        + ".",
        "",
        f"Ingestion: `events_ingest()` with batches of 1,000 `EventIn` (existing contacts by "
        f"email; Product Viewed / Page Viewed / Product Added), {zero['events']:,} events per "
        'configuration in four rounds (order 0/50, 50/0, 0/50, 50/0); "no slower" allows 10% '
        "noise. Ingestion writes only `ContactChange` marks, whatever the number of segments; "
        f"the pass that consumes them (up to 50,000 marks a pass; {res['drain']['marks']:,} "
        "queued) then took "
        + (
            f"{fmt_s(res['drain']['s'])} for {res['drain']['consumed']:,} marks"
            if res["drain"]["s"] is not None
            else f"**{res['drain']['error']}**"
        )
        + " over the 50 segments.",
        "",
    ]
    pop = res["populate"]
    lines += [
        "Other timings:",
        "",
        f"- the first full refresh of each of the 50 segments (`fifty_rules()` in the script: "
        f"profile, events, orders, RFM, tags, consent, nested): {fmt_s(pop['s'])} for "
        f"{pop['members']:,} memberships (SQL {fmt_s(pop['sql_s'])}, announcing "
        f"{fmt_s(pop['announce_s'])})"
        + (f"; cancelled: {'; '.join(pop['failed'])}" if pop["failed"] else "")
        + ";",
        "- their hourly full refresh when nothing changed (`segment_refresh()` of each): "
        + (
            fmt_s(res["refresh_all"]["s"])
            if res["refresh_all"]["s"]
            else f"**{res['refresh_all']['error']}**"
        )
        + ";",
        "- the first refresh on a fresh install (membership statistics of an empty table, as "
        "right after `migrate`): "
        + "; ".join(
            f"{r['label']}: first {fmt_run(r['run']['first'])}, no-op "
            f"{fmt_run(r['run'].get('second'))}"
            for r in res["fresh"]
        )
        + ".",
        "",
        "### Other rule shapes (count only, informational)",
        "",
        "| rule | members | count |",
        "|---|---:|---:|",
    ]
    for e in res["extras"]:
        count = f"{e['count']:,}" if isinstance(e["count"], int) else e["count"]
        lines.append(
            f"| {e['label']} `{json.dumps(e['rules'])}` | {count} | {fmt_s(e['count_s'])} |"
        )
    if res["explain"]:
        lines += ["", "## Plans of what took over 2 s", ""]
        for label, plan in res["explain"].items():
            lines += [f"### {label}", "", "```", plan, "```", ""]
    if args.findings and Path(args.findings).exists():
        lines += ["", Path(args.findings).read_text().strip(), ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--events-per-contact", type=int, default=10)
    parser.add_argument("--orders-per-contact", type=float, default=3.0)
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=1_000)
    parser.add_argument("--ingest-events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--db", default="keepers_bench_segments")
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded database")
    parser.add_argument("--statement-timeout", type=float, default=600, help="seconds")
    parser.add_argument(
        "--refresh-budget", type=float, default=60, help="seconds per refresh, as shipped"
    )
    parser.add_argument(
        "--pass-budget", type=float, default=180, help="seconds per pass over many segments"
    )
    parser.add_argument(
        "--extra-timeout", type=float, default=30, help="seconds, for the informational rules"
    )
    parser.add_argument(
        "--populate-budget", type=float, default=300, help="seconds per segment, first refresh"
    )
    parser.add_argument(
        "--refresh-all-budget",
        type=float,
        default=600,
        help="seconds for the no-op full refresh of the 50, as shipped",
    )
    parser.add_argument(
        "--rfm-budget", type=float, default=120, help="seconds for rfm_recompute, as shipped"
    )
    parser.add_argument("--output", default=str(ROOT / "bench" / "results-segments.md"))
    parser.add_argument("--no-output", action="store_true", help="print only")
    parser.add_argument(
        "--findings", default="", help="a Markdown file appended to the report (analysis)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    sampler = LoadSampler()
    info = {**machine(PG_SETTINGS), "loadavg": Path("/proc/loadavg").read_text().split()[:3]}
    load = None
    if not args.skip_load:
        log(f"recreating database {args.db}")
        recreate_database(args.db)
    setup_django(
        args.db,
        statement_timeout=args.statement_timeout,
        settings_module="config.settings.dev",
        env={"CELERY_BROKER_URL": "memory://", "CELERY_TASK_ALWAYS_EAGER": "false"},
    )
    # import every module measured now, so one run measures one version of the code
    import crm.rules
    import crm.services.events
    import crm.services.rfm
    import crm.services.segments  # noqa: F401

    info["code"] = code_version()
    log(f"code: {info['code']['commit']}; uncommitted: {info['code']['dirty'] or 'none'}")
    if not args.skip_load:
        migrate()
        from crm import clock

        log(f"loading {args.contacts:,} contacts")
        t0 = time.perf_counter()
        load = load_data(args, clock.now())
        log(f"loaded in {time.perf_counter() - t0:.0f} s")
    res = measure(args)
    info["code_end"] = code_version()
    info["load_samples"] = sampler.stop()
    text = report(args, info, load, res, time.perf_counter() - started)
    print()
    print(text)
    if not args.no_output:
        Path(args.output).write_text(text)
        log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
