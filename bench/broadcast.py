#!/usr/bin/env python
"""Broadcast benchmark: a 100,000-recipient newsletter sent end to end on PostgreSQL with
Anymail's test backend (target ≥ 500 messages/s on a 2-core machine).

    .venv/bin/python bench/broadcast.py                       # full scale, writes the report
    .venv/bin/python bench/broadcast.py --recipients 5000     # a quick check

What it does, in one run:

1. drops and recreates `keepers_bench_broadcast` on 127.0.0.1:5432 (user postgres) and runs
   the migrations with `config.settings.test` (eager Celery, memory broker,
   EMAIL_BACKEND=anymail.backends.test.EmailBackend, checked);
2. loads with COPY: N contacts in time zones where it is daytime (nobody inside the quiet
   hours), each with a granted email/all consent record except a few hundred (no consent),
   a few hundred more with the `newsletter` topic withdrawn and a few hundred whose
   address is suppressed; a suppression list of 3,000 other addresses; a static segment
   with all N as members; a 200-product catalog; a topic `newsletter`; a marketing
   template (heading, paragraphs, a static grid of 4 products, its own <style>) and a
   broadcast at shop time, send date/time = now; for the optional recommendations run, a
   second segment of the first --recs-recipients contacts, with orders, views, and
   co-purchase/bestseller tables refreshed;
3. freeze: `broadcast_schedule`, then `broadcast_start` alone, timed (what the first
   `broadcasts_tick` does for it: one INSERT … SELECT of N recipient rows);
4. end to end, 1 process and then W processes (fork, each its own connection, fed from one
   queue): every due recipient id, in batches of 500 in (send_at, pk) order as the tick
   hands them out, through `broadcast_recipients_send(ids=…)`; its on-commit
   `messages_send_task` runs eagerly, inline, right after the commit (render → Message →
   `messages_send` → Anymail test backend). Between runs the recipients are put back to
   pending and their messages deleted (VACUUM ANALYZE);
5. cProfile of one batch of 500, with its query count (broadcast part / sending part);
6. the real thing in one process (--tick-recipients, 0 to skip): the main broadcast
   parked (no recipients, no messages), another one with the same template to the first
   --tick-recipients contacts (their own static segment) scheduled, then
   `broadcasts_tick()` called until it reports it finished (it starts it, hands out
   batches to the eager Celery task, closes it);
7. optional (--recs-recipients, 0 to skip): another broadcast whose template uses
   `{% recommendations 4 as products %}` (up to 6 queries per render), 1 process, and a
   profile of one of its batches;
8. after every run, checks: at most one message per recipient, recipients and messages by
   status, skip reasons as loaded, sent = queued, no message id or address twice in the
   outbox; prints a table and writes bench/results-broadcast.md.

What the benchmarks share (database and Django setup, the catalog and contacts, CPU
accounting, batches in forked processes, waiting for a quiet machine, report pieces) is
in bench/harness.py. Before each phase
the script waits (--phase-quiet-wait) for other work on the machine to stop, and reports
the CPU it could not avoid sharing ("other" cores) and the CPU per message, which other
work disturbs less than wall-clock rates.

django.core.mail.outbox is drained after every batch (also inside the tick, through a
wrapper around the task's service call): the test backend appends every message to it and
looks each one up with outbox.index(), which would grow without bound. Only 127.0.0.1 is
contacted. Every loop is bounded (--timeout per phase) and every statement has a timeout.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

# bench/harness.py: this script's directory is first on sys.path when it is run
import harness
from harness import (
    COPY_EVENTS,
    ROOT,
    BatchRun,
    Meter,
    add_common_flags,
    copy_contacts,
    copy_products,
    cpu_bound_rate,
    cpu_per_item,
    daytime_zones,
    fmt_rate,
    git_state,
    log,
    machine,
    machine_lines,
    mjml_bench_template,
    noisy_lines,
    pg,
    phase_run,
    profile_lines,
    profile_tops,
    query_kinds,
    quiet_line,
    rate,
    read_analysis,
    report_rebuild,
    report_save,
    row,
    sample_message,
    sample_message_line,
    set_statement_timeout,
    setup_fresh,
    table,
    verdict,
    wait_for_benchmarks,
    wait_for_quiet,
)

TARGET = 500  # messages per second (docs/benchmarks.md)

TEMPLATE_SUBJECT = (
    "{{ first_name|default:'Hi' }}, the {{ broadcast.name }} is here: four new favourites"
)
TEMPLATE_PREHEADER = "New arrivals, a reader's story and 15% off everything until Sunday."
TEMPLATE_HEAD = """<style>
  h1 { font-size: 26px; margin: 0 0 12px; color: #2f4858; }
  h2 { font-size: 19px; margin: 28px 0 8px; color: #2f4858; }
  p.lead { font-size: 17px; color: #333; }
  table.grid { width: 100%; border-collapse: collapse; margin: 12px 0 20px; }
  table.grid td { width: 50%; padding: 10px 8px; vertical-align: top; text-align: center; }
  td.product img { display: block; margin: 0 auto 8px; border-radius: 6px; }
  td.product a.name { color: #222; font-weight: bold; text-decoration: none; }
  span.price { display: block; color: #2f4858; font-size: 15px; margin: 4px 0 8px; }
  a.shop { display: inline-block; padding: 6px 14px; border: 1px solid #2f4858; border-radius: 4px; color: #2f4858; text-decoration: none; font-size: 13px; }
  blockquote { margin: 16px 0; padding: 8px 16px; border-left: 3px solid #e0d6c8; color: #555; font-style: italic; }
  p.small { font-size: 13px; color: #666; }
</style>
<h1>The {{ broadcast.name }}</h1>
<p class="lead">Hello {{ first_name|default:"there" }}, spring has arrived at {{ shop.name }}, and
so have a few things we have been waiting all winter to show you.</p>
<p>This month our buyers travelled to three small workshops that make things the slow way:
hand-thrown mugs from a pottery by the sea, kettles finished by hand, and coffee roasted in
batches of twelve kilos. Every piece below is in stock today, and ships within two days.</p>
<h2>New in the shop</h2>
"""
GRID_STATIC = """<table class="grid" role="presentation" cellpadding="0" cellspacing="0">
  <tr>
    <td class="product"><a href="https://shop.example.com/p/SKU-00011"><img src="https://cdn.example.com/img/SKU-00011.jpg" alt="Organic Mug" width="240" height="240"></a>
      <a class="name" href="https://shop.example.com/p/SKU-00011">Organic Mug 11</a><span class="price">$24.00</span>
      <a class="shop" href="https://shop.example.com/p/SKU-00011">Shop now</a></td>
    <td class="product"><a href="https://shop.example.com/p/SKU-00024"><img src="https://cdn.example.com/img/SKU-00024.jpg" alt="Classic Kettle" width="240" height="240"></a>
      <a class="name" href="https://shop.example.com/p/SKU-00024">Classic Kettle 24</a><span class="price">$89.00</span>
      <a class="shop" href="https://shop.example.com/p/SKU-00024">Shop now</a></td>
  </tr>
  <tr>
    <td class="product"><a href="https://shop.example.com/p/SKU-00042"><img src="https://cdn.example.com/img/SKU-00042.jpg" alt="Deluxe Coffee Beans" width="240" height="240"></a>
      <a class="name" href="https://shop.example.com/p/SKU-00042">Deluxe Coffee Beans 42</a><span class="price">$18.50</span>
      <a class="shop" href="https://shop.example.com/p/SKU-00042">Shop now</a></td>
    <td class="product"><a href="https://shop.example.com/p/SKU-00077"><img src="https://cdn.example.com/img/SKU-00077.jpg" alt="Vintage Lamp" width="240" height="240"></a>
      <a class="name" href="https://shop.example.com/p/SKU-00077">Vintage Lamp 77</a><span class="price">$64.00</span>
      <a class="shop" href="https://shop.example.com/p/SKU-00077">Shop now</a></td>
  </tr>
</table>
"""
GRID_RECS = """{% load keepers %}{% recommendations 4 as products %}
<table class="grid" role="presentation" cellpadding="0" cellspacing="0">
{% for product in products %}{% if forloop.counter0|divisibleby:2 %}<tr>{% endif %}
    <td class="product"><a href="{{ product.url }}"><img src="{{ product.image_url }}" alt="{{ product.name }}" width="240" height="240"></a>
      <a class="name" href="{{ product.url }}">{{ product.name }}</a><span class="price">${{ product.price|floatformat:2 }}</span>
      <a class="shop" href="{{ product.url }}">Shop now</a></td>
{% if forloop.counter|divisibleby:2 or forloop.last %}</tr>{% endif %}{% endfor %}
</table>
"""
TEMPLATE_TAIL = """<p><a class="button" href="{{ shop.url }}/new?utm_source=newsletter">See everything new</a></p>
<h2>From our readers</h2>
<blockquote>“I bought the kettle for my mother and ended up ordering a second one for
myself. It is the quietest thing in our kitchen.” — Maria, Lisbon</blockquote>
<p>Until Sunday, use the code SPRING15 for 15% off everything, new arrivals included.
Orders over $50 ship free, and every order can be returned within 30 days, no questions
asked.</p>
{% if attributes.plan == "gold" %}<p><strong>Gold member:</strong> you earn double points on everything this week.</p>{% endif %}
<p>Questions? Just reply to this email: a real person on our team reads every message.</p>
<p>See you soon,<br>The {{ shop.name }} team</p>
<p class="small">Prices as of this email; they may change. Offer not combinable with other codes.</p>
"""
TEMPLATE_HTML = TEMPLATE_HEAD + GRID_STATIC + TEMPLATE_TAIL
TEMPLATE_HTML_RECS = TEMPLATE_HEAD + GRID_RECS + TEMPLATE_TAIL

REASON_CONSENT = "no marketing consent"
REASON_TOPIC = "unsubscribed from the topic 'newsletter'"
REASON_SUPPRESSED = "suppressed: hard bounce"


# ------------------------------------------------------------------------------------------
# Setup
# ------------------------------------------------------------------------------------------
def load(args, now: datetime) -> dict:
    """Contacts, consents, suppressions, segments, catalog (COPY); topic and templates
    (ORM); for the recommendations run, orders, lines and views (COPY), then the
    co-purchase and bestseller tables refreshed. Returns ids and the expected skips."""
    from campaigns.models import EmailTemplate
    from crm.models import Segment, Topic
    from crm.services.privacy import address_hash

    rng = random.Random(args.seed)
    n = args.recipients
    zones = daytime_zones(now)
    t0 = time.perf_counter()
    topic = Topic.objects.create(slug="newsletter", name="Newsletter")
    templates = {}
    for key, name, html, blocks in (
        ("main", "bench-newsletter", TEMPLATE_HTML, "newsletter"),
        ("recs", "bench-newsletter-recs", TEMPLATE_HTML_RECS, "newsletter-recs"),
    ):
        mjml = args.template == "mjml"
        templates[key] = EmailTemplate.objects.create(
            name=name,
            category="marketing",
            subject=TEMPLATE_SUBJECT,
            preheader=TEMPLATE_PREHEADER,
            format="mjml" if mjml else "html",
            mjml_body=mjml_bench_template(blocks) if mjml else "",
            html_body="" if mjml else html,
            topic=topic,
        ).pk
    segments = {
        "main": Segment.objects.create(name="bench-readers", kind="static", member_count=n).pk,
        "recs": Segment.objects.create(
            name="bench-readers-recs", kind="static", member_count=min(args.recs_recipients, n)
        ).pk,
        "tick": Segment.objects.create(
            name="bench-readers-tick", kind="static", member_count=min(args.tick_recipients, n)
        ).pk,
    }
    conn = pg(args.db)
    set_statement_timeout(conn)
    stamp = now - timedelta(days=400)
    with conn.cursor() as cur:
        copy_products(cur, rng, stamp, for_recommendations=True)
        cur.execute("SELECT id, price FROM crm_product ORDER BY id")
        products = cur.fetchall()
        contact_ids = copy_contacts(cur, rng, n, email="reader", zones=zones, stamp=stamp)
        # the skip paths, spread over the whole audience (every batch meets a few), disjoint
        k1, k2, k3 = (min(x, n // 10) for x in (args.no_consent, args.topic_out, args.suppressed))
        picked = rng.sample(range(n), k1 + k2 + k3)
        no_consent = {contact_ids[i] for i in picked[:k1]}
        topic_out = {contact_ids[i] for i in picked[k1 : k1 + k2]}
        suppressed = {contact_ids[i] for i in picked[k1 + k2 :]}
        with cur.copy(
            "COPY crm_consentrecord (contact_id, channel, topic, status, source, user_agent,"
            " wording_version, recorded_at) FROM STDIN"
        ) as copy:
            for cid in contact_ids:
                if cid not in no_consent:
                    copy.write_row((cid, "email", "all", "granted", "bench", "", "v1", stamp))
                if cid in topic_out:
                    copy.write_row(
                        (
                            cid,
                            "email",
                            "newsletter",
                            "withdrawn",
                            "preferences",
                            "",
                            "v1",
                            now - timedelta(days=3),
                        )
                    )
        with cur.copy(
            "COPY campaigns_suppression (email, email_hash, reason, source, detail, created_at, lift_note)"
            " FROM STDIN"
        ) as copy:
            for i in range(args.suppression_list):
                address = f"gone-{i}@example.org"
                copy.write_row(
                    (address, address_hash(address), "hard_bounce", "bench", "", stamp, "")
                )
            for i, cid in enumerate(contact_ids):
                if cid in suppressed:
                    address = f"reader-{i}@example.com"
                    copy.write_row(
                        (address, address_hash(address), "hard_bounce", "bench", "", stamp, "")
                    )
        recs_n, tick_n = min(args.recs_recipients, n), min(args.tick_recipients, n)
        with cur.copy(
            "COPY crm_segmentmembership (segment_id, contact_id, entered_at) FROM STDIN"
        ) as copy:
            for cid in contact_ids:
                copy.write_row((segments["main"], cid, stamp))
            for cid in contact_ids[:recs_n]:
                copy.write_row((segments["recs"], cid, stamp))
            for cid in contact_ids[:tick_n]:
                copy.write_row((segments["tick"], cid, stamp))
        history = load_history(cur, rng, contact_ids[:recs_n], products, now)
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    conn.close()
    if recs_n:
        from crm.services.recommendations import recommendations_refresh

        history["refresh"] = recommendations_refresh(now=now)
    seconds = time.perf_counter() - t0

    def expected(ids: list[int]) -> dict:
        members = set(ids)
        skipped = {
            REASON_CONSENT: len(no_consent & members),
            REASON_TOPIC: len(topic_out & members),
            REASON_SUPPRESSED: len(suppressed & members),
        }
        return {
            "audience": len(members),
            "skipped": {k: v for k, v in skipped.items() if v},
            "queued": len(members) - sum(skipped.values()),
        }

    log(f"loaded {n:,} contacts in {seconds:.1f} s")
    return {
        "seconds": seconds,
        "zones": zones,
        "templates": templates,
        "segments": segments,
        "expected": {
            "main": expected(contact_ids),
            "recs": expected(contact_ids[:recs_n]),
            "tick": expected(contact_ids[:tick_n]),
        },
        "suppressions": args.suppression_list + len(suppressed),
        "history": history,
    }


def load_history(cur, rng: random.Random, contact_ids: list[int], products, now) -> dict:
    """Orders (1–2 for 60% of these contacts, 1–3 lines from one or two categories) and
    recent product views (1–3 for half of them), so recommendations have something to
    work with: co-purchases, categories, views, bestsellers."""
    if not contact_ids:
        return {"orders": 0, "lines": 0, "views": 0}
    by_category: dict[int, list[tuple[int, object]]] = {}
    for i, (pk, price) in enumerate(products):
        by_category.setdefault((i // 8) % 8, []).append((pk, price))
    orders: list[tuple[str, int, list[tuple[int, object, int]]]] = []
    views: list[tuple[int, str, datetime, str]] = []
    for i, cid in enumerate(contact_ids):
        if rng.random() < 0.6:
            for k in range(rng.randint(1, 2)):
                cats = rng.sample(range(8), rng.randint(1, 2))
                lines = []
                for _ in range(rng.randint(1, 3)):
                    pk, price = rng.choice(by_category[rng.choice(cats)])
                    lines.append((pk, price, rng.randint(1, 2)))
                orders.append((f"bench-o-{i}-{k}", cid, lines))
        if rng.random() < 0.5:
            for k in range(rng.randint(1, 3)):
                views.append(
                    (
                        cid,
                        f"SKU-{rng.randrange(200):05d}",
                        now - timedelta(days=rng.uniform(0.5, 20)),
                        f"bench-view-{i}-{k}",
                    )
                )
    with cur.copy(
        "COPY crm_order (external_id, contact_id, total, currency, refunded_total, status,"
        " ordered_at, source, attributes, created_at) FROM STDIN"
    ) as copy:
        for external_id, cid, lines in orders:
            total = sum(float(price) * qty for _pk, price, qty in lines)
            at = now - timedelta(days=rng.uniform(1, 80))
            copy.write_row(
                (external_id, cid, f"{total:.2f}", "USD", "0", "placed", at, "bench", "{}", at)
            )
    cur.execute("SELECT external_id, id FROM crm_order WHERE external_id LIKE 'bench-o-%%'")
    order_pk = dict(cur.fetchall())
    cur.execute("SELECT id, product_id, name, category FROM crm_product")
    catalog = {r[0]: r[1:] for r in cur.fetchall()}
    line_count = 0
    with cur.copy(
        "COPY crm_orderline (order_id, product_id, product_ref, name, category, quantity,"
        " unit_price) FROM STDIN"
    ) as copy:
        for external_id, _cid, lines in orders:
            for pk, price, qty in lines:
                ref, name, category = catalog[pk]
                copy.write_row((order_pk[external_id], pk, ref, name, category, qty, price))
                line_count += 1
    with cur.copy(COPY_EVENTS) as copy:
        for cid, sku, at, message_id in views:
            copy.write_row(
                (
                    cid,
                    "",
                    "Product Viewed",
                    json.dumps({"product_id": sku}),
                    "{}",
                    at,
                    at,
                    "bench",
                    message_id,
                )
            )
    return {"orders": len(orders), "lines": line_count, "views": len(views)}


def broadcast_create(name: str, template_id: int, segment_id: int) -> int:
    """A draft at shop time, its send date and time now (to the second, so it is due)."""
    from zoneinfo import ZoneInfo

    from django.conf import settings

    from campaigns.models import Broadcast
    from crm import clock

    local = clock.now().astimezone(ZoneInfo(settings.KEEPERS_SHOP_TIME_ZONE))
    return Broadcast.objects.create(
        name=name,
        template_id=template_id,
        segment_id=segment_id,
        send_date=local.date(),
        send_time=local.time().replace(microsecond=0),
        timing="shop",
    ).pk


def reset(args, broadcast_id: int, *, unfreeze: bool = False) -> None:
    """Put a broadcast back as it was before its first batch: recipients pending, their
    messages deleted. With unfreeze, back to scheduled without recipients (as before its
    first tick). The recipients go first: they reference the messages."""
    with pg(args.db, autocommit=True) as conn:
        set_statement_timeout(conn)
        if unfreeze:
            conn.execute(
                "DELETE FROM campaigns_broadcastrecipient WHERE broadcast_id = %s", (broadcast_id,)
            )
            conn.execute(
                "UPDATE campaigns_broadcast SET status = 'scheduled', audience_size = NULL,"
                " frozen_at = NULL, finished_at = NULL WHERE id = %s",
                (broadcast_id,),
            )
        else:
            conn.execute(
                "UPDATE campaigns_broadcastrecipient r SET status = 'pending', reason = '',"
                " message_id = NULL, send_at = b.frozen_at FROM campaigns_broadcast b"
                " WHERE b.id = r.broadcast_id AND r.broadcast_id = %s",
                (broadcast_id,),
            )
            conn.execute(
                "UPDATE campaigns_broadcast SET status = 'sending', finished_at = NULL"
                " WHERE id = %s",
                (broadcast_id,),
            )
        conn.execute("DELETE FROM campaigns_message WHERE broadcast_id = %s", (broadcast_id,))
        conn.execute(
            "VACUUM ANALYZE campaigns_broadcastrecipient, campaigns_message, campaigns_broadcast"
        )


def due_ids(broadcast_id: int) -> list[int]:
    """The broadcast's due recipients in the order broadcasts_tick hands them out."""
    from campaigns.models import BroadcastRecipient
    from crm import clock

    return list(
        BroadcastRecipient.objects.filter(
            broadcast_id=broadcast_id, status="pending", send_at__lte=clock.now()
        )
        .order_by("send_at", "pk")
        .values_list("pk", flat=True)
    )


# ------------------------------------------------------------------------------------------
# Measurement
# ------------------------------------------------------------------------------------------
def drain_outbox() -> list[tuple[int, str]]:
    """(message id, address) of every message the test backend holds; empties it."""
    from django.core import mail

    outbox = getattr(mail, "outbox", [])
    sent = [(int(m.metadata["message_id"]), m.to[0]) for m in outbox]
    outbox.clear()
    return sent


def _work(ids: list[int]) -> BatchRun:
    """One batch end to end: its counts, wall time, CPU (this process, its PostgreSQL
    backend), and the (message id, address) of what reached the outbox."""
    from campaigns.services.broadcasts import broadcast_recipients_send

    with Meter() as m:
        # the on-commit messages_send_task runs here, eagerly, right after the batch commits
        counts = broadcast_recipients_send(ids=ids)
    sent = drain_outbox()
    return BatchRun(
        {**counts, "sent": len(sent)}, len(ids), m.seconds, m.python_cpu, m.pg_cpu, sent
    )


def run_batches(ids: list[int], batch_size: int, workers: int, timeout: float) -> dict:
    """All ids in batches of broadcast_recipients_send, here or in `workers` forked
    processes fed from one queue. Bounded. The outbox's (message id, address) pairs come
    back under "_sent"."""
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    figures, sent = harness.run_batches(_work, batches, workers=workers, timeout=timeout)
    return {**figures, "_sent": sent}


def measure(fn) -> tuple[object, dict]:
    """Run fn in this process, with the CPU of this process, of its PostgreSQL backend and
    of the whole machine."""
    with Meter() as m:
        out = fn()
    return out, {
        "workers": 1,
        **m.figures(),
        "batch_median": None,
        "batch_max": None,
        "timed_out": False,
    }


def freeze(broadcast_id: int) -> dict:
    """Preview (what staff confirm), schedule, then broadcast_start alone, timed."""
    from campaigns.models import Broadcast
    from campaigns.services.broadcasts import (
        broadcast_preview,
        broadcast_schedule,
        broadcast_start,
    )
    from crm import clock

    broadcast = Broadcast.objects.select_related("template").get(pk=broadcast_id)
    t0 = time.perf_counter()
    preview = broadcast_preview(broadcast)
    preview_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    broadcast_schedule(broadcast=broadcast)
    schedule_s = time.perf_counter() - t0
    started, res = measure(lambda: broadcast_start(broadcast_id=broadcast_id, now=clock.now()))
    size = Broadcast.objects.get(pk=broadcast_id).audience_size or 0
    return {
        **res,
        "ids": size,
        "started": started,
        "preview_count": preview["count"],
        "preview_s": preview_s,
        "schedule_s": schedule_s,
    }


class OutboxDrain:
    """For the tick run: wrap the service the eager Celery task calls, so the outbox is
    drained after every batch (as _work does) and each batch's wall time is kept. The
    task imports the service from its module when it runs, so the wrapper is what runs
    (its on-commit send included: the batch's transaction ends inside the service)."""

    def __enter__(self):
        from campaigns.services import broadcasts as module

        self.sent: list[tuple[int, str]] = []
        self.walls: list[float] = []
        self.counts: dict[str, int] = {}
        self._saved = original = module.broadcast_recipients_send

        def wrapped(*, ids, **kwargs):
            t0 = time.perf_counter()
            counts = original(ids=ids, **kwargs)
            self.walls.append(time.perf_counter() - t0)
            self.sent.extend(drain_outbox())
            for k, v in counts.items():
                self.counts[k] = self.counts.get(k, 0) + v
            return counts

        module.broadcast_recipients_send = wrapped
        return self

    def __exit__(self, *exc):
        from campaigns.services import broadcasts as module

        module.broadcast_recipients_send = self._saved
        return False


def tick_loop(broadcast_id: int, timeout: float, max_ticks: int) -> dict:
    """broadcasts_tick() until it reports the broadcast finished (or nothing to do three
    times running), in this process; Celery is eager, so each tick runs its batches."""
    from campaigns.models import Broadcast
    from campaigns.services.broadcasts import broadcasts_tick

    ticks: list[dict] = []
    timed_out = False

    def loop() -> None:
        nonlocal timed_out
        deadline = time.monotonic() + timeout
        idle = 0
        for _ in range(max_ticks):
            if time.monotonic() > deadline:
                timed_out = True
                return
            t0 = time.perf_counter()
            result = broadcasts_tick()
            ticks.append({**result, "seconds": round(time.perf_counter() - t0, 2)})
            if result["finished"]:
                return
            idle = idle + 1 if not (result["started"] or result["handed_out"]) else 0
            if idle >= 3:
                return

    with OutboxDrain() as drain:
        _out, res = measure(loop)
    walls = drain.walls
    broadcast = Broadcast.objects.get(pk=broadcast_id)
    return {
        **res,
        "ids": broadcast.audience_size or 0,
        "batches": len(walls),
        "batch_median": statistics.median_high(walls) if walls else None,
        "batch_max": max(walls) if walls else None,
        "timed_out": timed_out,
        **drain.counts,
        "sent": len(drain.sent),
        "ticks": ticks,
        "status_after": broadcast.status,
        "_sent": drain.sent,
    }


def check(broadcast_id: int, expected: dict, run: dict | None) -> dict:
    """Exactly once, and the skips as loaded: recipients and messages by status, skip
    reasons, messages per recipient, and what reached the outbox."""
    from django.db.models import Count

    from campaigns.models import BroadcastRecipient, Message

    recipients = BroadcastRecipient.objects.filter(broadcast_id=broadcast_id)
    messages = Message.objects.filter(broadcast_id=broadcast_id)
    by_status = dict(
        recipients.order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    reasons = dict(
        recipients.filter(status="skipped")
        .order_by()
        .values_list("reason")
        .annotate(n=Count("id"))
        .values_list("reason", "n")
    )
    msg_status = dict(
        messages.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    twice = messages.order_by().values("contact_id").annotate(n=Count("id")).filter(n__gt=1).count()
    orphans = recipients.filter(status="queued", message__isnull=True).count()
    problems = []
    if twice:
        problems.append(f"{twice} recipients have more than one message")
    if orphans:
        problems.append(f"{orphans} queued recipients without a message")
    if by_status.get("queued", 0) != expected["queued"]:
        problems.append(f"queued {by_status.get('queued', 0):,}, expected {expected['queued']:,}")
    if reasons != expected["skipped"]:
        problems.append(f"skip reasons {reasons}, expected {expected['skipped']}")
    if msg_status.get("sent", 0) != by_status.get("queued", 0) or len(msg_status) > 1:
        problems.append(f"messages {msg_status} for {by_status.get('queued', 0):,} queued")
    out = {}
    if run is not None:
        sent = run.get("_sent", [])
        out = {
            "outbox": len(sent),
            "outbox_duplicate_ids": len(sent) - len({i for i, _ in sent}),
            "outbox_duplicate_addresses": len(sent) - len({a for _, a in sent}),
        }
        if out["outbox"] != msg_status.get("sent", 0):
            problems.append(
                f"outbox {out['outbox']:,} ≠ messages sent {msg_status.get('sent', 0):,}"
            )
        if out["outbox_duplicate_ids"] or out["outbox_duplicate_addresses"]:
            problems.append(
                f"outbox duplicates: {out['outbox_duplicate_ids']} ids,"
                f" {out['outbox_duplicate_addresses']} addresses"
            )
    return {
        "recipients": by_status,
        "skip_reasons": reasons,
        "messages": msg_status,
        "recipients_with_two_messages": twice,
        **out,
        "problems": problems,
        "ok": not problems,
    }


class SendSplit:
    """Note where the sending part of a batch starts and ends in the query log: wraps the
    service the eager messages_send_task calls (the task imports it from its module when
    it runs)."""

    def __enter__(self):
        from django.db import connection

        from campaigns.services import sending as module

        self.start = self.end = None
        self._saved = original = module.messages_send

        def wrapped(*, ids):
            self.start = len(connection.queries_log)
            try:
                return original(ids=ids)
            finally:
                self.end = len(connection.queries_log)

        module.messages_send = wrapped
        return self

    def __exit__(self, *exc):
        from campaigns.services import sending as module

        module.messages_send = self._saved
        return False


BREAKDOWN = [  # (label, path suffix or "", function name or a fragment of a builtin's name)
    (
        "broadcast_recipients_send: the whole batch",
        "services/broadcasts.py",
        "broadcast_recipients_send",
    ),
    ("· email_render (500 renders)", "services/rendering.py", "email_render"),
    ("·· Django template rendering", "django/template/backends/django.py", "render"),
    ("·· {% recommendations %}", "services/recommendations.py", "recommendations_for"),
    ("·· css_inline (CSS inlined into the HTML)", "", "'inline' of"),
    (
        "·· contact_links (signed unsubscribe/preferences tokens)",
        "services/rendering.py",
        "contact_links",
    ),
    ("·· _text_from_html (text part)", "services/rendering.py", "_text_from_html"),
    (
        "· skip_reasons (suppression + consent; before render and again at send)",
        "services/sending.py",
        "skip_reasons",
    ),
    ("· SendPolicy: load", "services/policy.py", "__init__"),
    ("· SendPolicy.check", "services/policy.py", "check"),
    ("· Message bulk_create", "django/db/models/query.py", "bulk_create"),
    ("· bulk_update_rows (recipients)", "crm/db.py", "bulk_update_rows"),
    ("· messages_send (inline, on commit)", "services/sending.py", "messages_send"),
    ("·· _claim", "services/sending.py", "_claim"),
    ("·· email_build", "services/sending.py", "email_build"),
    ("·· Anymail send_messages (test backend)", "anymail/backends/base.py", "send_messages"),
    ("·· _mark", "services/sending.py", "_mark"),
    ("psycopg execute (all statements, incl. server time)", "psycopg/cursor.py", "execute"),
    (
        "· of which: parameters quoted into the SQL in Python (client-side binding)",
        "psycopg/_cursor_base.py",
        "_convert_query",
    ),
    ("transaction commits", "django/db/backends/base/base.py", "commit"),
]


def breakdown(prof: cProfile.Profile, total: float) -> list[list]:
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = []
    for label, path, name in BREAKDOWN:
        calls, cum = 0, 0.0
        for (filename, _line, func), (_cc, nc, _tt, ct, _callers) in stats.items():
            hit = (
                (path and filename.endswith(path) and func == name)
                if path
                else (name in func and filename == "~")
            )
            if hit:
                calls += nc
                cum += ct
        if calls:
            rows.append([label, calls, cum, cum / total if total else 0.0])
    return rows


def profile_batch(ids: list[int]) -> dict:
    """cProfile and the queries of one batch end to end, in this process."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    prof = cProfile.Profile()
    c0, t0 = time.process_time(), time.perf_counter()
    with SendSplit() as split, CaptureQueriesContext(connection) as queries:
        prof.enable()
        batch = _work(ids)
        prof.disable()
    counts, pg_cpu = batch.counts, batch.pg_cpu
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    send_q = (split.end - split.start) if split.start is not None else 0
    total_q = len(queries.captured_queries)
    prof_total = sum(tt for (_cc, _nc, tt, _ct, _c) in pstats.Stats(prof).stats.values())  # type: ignore[attr-defined]
    return {
        "ids": len(ids),
        "wall": wall,
        "cpu": cpu,
        "pg_cpu": pg_cpu,
        "queries": total_q,
        "queries_send": send_q,
        "queries_broadcast": total_q - send_q,
        "queries_by_kind": query_kinds(queries.captured_queries),
        "counts": counts,
        "profiled_s": prof_total,
        "breakdown": breakdown(prof, prof_total),
        **profile_tops(prof, 30),
    }


UNDER_TEST = [  # the code a broadcast's send path runs
    "campaigns/services/broadcasts.py",
    "campaigns/services/sending.py",
    "campaigns/services/rendering.py",
    "campaigns/services/policy.py",
    "campaigns/services/subscriptions.py",
    "campaigns/tasks.py",
    "campaigns/models.py",
    "campaigns/templates/campaigns/email",
    "campaigns/templatetags",
    "crm/db.py",
    "crm/models.py",
    "crm/selectors.py",
    "crm/services/recommendations.py",
]


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
def build_report(args, info: dict, res: dict, total_s: float) -> tuple[str, str]:
    get = res.get
    w, n = args.workers, args.recipients
    nproc = info["nproc"]

    def note(key: str) -> str:
        r = get(key)
        if not r:
            return ""
        parts = [f"{r.get('sent', 0):,} sent"]
        if r.get("skipped"):
            parts.append(f"{r['skipped']:,} skipped")
        if r.get("held"):
            parts.append(f"{r['held']:,} held")
        return ", ".join(parts)

    header = [
        "run",
        "recipients",
        "seconds",
        "messages/s",
        "median batch",
        "cores: python / PG / other",
        "CPU per message (py + PG)",
        "note",
    ]
    fz = get("freeze")
    freeze_row = row(
        f"1. freeze: `broadcast_start` (INSERT … SELECT of {n:,} recipient rows)",
        fz,
        "ids",
        "per second = recipient rows" if fz else "",
    )
    if fz:
        freeze_row[6] = cpu_per_item(fz, "ids") + " per row"
    rows = [
        freeze_row,
        row("2. end to end, batches of 500, 1 process", get("e2e1"), "sent", note("e2e1")),
        row(f"2. end to end, batches of 500, {w} processes", get("e2ew"), "sent", note("e2ew")),
        row(
            f"3. `broadcasts_tick()` loop, eager Celery, 1 process (freeze included;"
            f" first {args.tick_recipients:,} contacts)",
            get("tick"),
            "sent",
            note("tick")
            + (
                f"; broadcasts_tick called {len(get('tick', {}).get('ticks', []))}×"
                if get("tick")
                else ""
            ),
        ),
    ]
    if get("recs1"):
        rows.append(
            row(
                "with `{% recommendations 4 %}` in the template, 1 process",
                get("recs1"),
                "sent",
                note("recs1"),
            )
        )
    best = max(
        (x for x in (rate(get("e2e1"), "sent"), rate(get("e2ew"), "sent")) if x), default=None
    )
    targets = [
        [
            f"end to end, messages/s (better of 1 and {w} processes)",
            f"≥ {TARGET}",
            fmt_rate(best),
            verdict(None if best is None else best >= TARGET),
        ]
    ]
    ceiling = []
    for key, label in (
        ("e2e1", "end to end, 1 process"),
        ("tick", "tick loop, 1 process"),
        ("recs1", "with recommendations, 1 process"),
    ):
        if get(key):
            ceiling.append(
                [
                    label,
                    cpu_per_item(res[key], "sent"),
                    fmt_rate(cpu_bound_rate(res[key], "sent", nproc)),
                ]
            )
    console = (
        table(rows, header)
        + "\n\n"
        + table(targets, ["target", "wanted", "measured", "verdict"])
        + "\n\n"
        + table(
            ceiling, ["1-process run", "CPU per message", f"CPU-bound ceiling on {nproc} cores"]
        )
    )

    cmd = " ".join([".venv/bin/python", "bench/broadcast.py", *res.get("argv", sys.argv[1:])])
    exp = res.get("expected", {}).get("main", {})
    g0, g1 = res.get("git_start", {}), res.get("git", {})
    lines = [
        "# Broadcast benchmark",
        "",
        f"Run {res.get('finished_at', datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))} with"
        f" `{cmd}` ({total_s / 60:.1f} min in all, load {res.get('load_seconds', 0):.0f} s).",
        "",
    ]
    if g0.get("commit"):
        code = f"Code at the start: commit {g0['commit']} ({g0.get('subject', '')})," + (
            f" uncommitted changes to the code under test: {', '.join(g0['uncommitted'])}."
            if g0.get("uncommitted")
            else " no uncommitted changes to the code under test."
        )
        if g1.get("commit") and g1["commit"] != g0["commit"]:
            code += (
                f" Others committed during the run ({g1.get('commits_since', '?')} commits, up to"
                f" {g1['commit']});"
                + (
                    f" of the code under test they changed {', '.join(g1['changed_since'])}."
                    if g1.get("changed_since")
                    else " none changed the code under test."
                )
                + " Each module was imported once, at its first use in the first seconds of"
                " the run, so the run measured the code as it was then."
            )
        lines += [code, ""]
    lines += [
        *([f"**Partial report: {res['partial']}.**", ""] if res.get("partial") else []),
        "## Machine",
        "",
        *machine_lines(info),
        f"- Python {info['python']}, Django {info['django']}, settings `config.settings.test`"
        " (Celery eager), EMAIL_BACKEND `anymail.backends.test.EmailBackend`, DEBUG off",
    ]
    if get("quiet"):
        lines.append(
            quiet_line(res["quiet"])
            + (
                f"; other benchmarks still running after waiting: {res['other_benchmarks']}"
                if res.get("other_benchmarks")
                else "; no other benchmark running"
            )
        )
    h = res.get("history", {})
    lines += [
        "",
        "## Setup",
        "",
        f"- {n:,} contacts, all members of one static segment, in the time zones"
        f" {', '.join(res.get('zones', []))} (those of a list of 20 where it was 09:00–14:00"
        " at load, so nobody is inside the default quiet hours, 21:00–08:00; the send policy"
        " is still evaluated for every recipient). Each has a granted email/all consent"
        f" record except {args.no_consent} (no consent: skipped); {args.topic_out} more have"
        f" withdrawn the `newsletter` topic (skipped); {args.suppressed} more are on the"
        " suppression list (hard bounce: skipped). These are spread at random over the"
        " audience, so every batch meets some.",
        f"- The suppression list: {args.suppression_list:,} other addresses plus those"
        f" {args.suppressed} ({res.get('suppressions', 0):,} rows), checked for every"
        " recipient before rendering and again for every message at send time.",
        "- Template `bench-newsletter`: marketing, topic `newsletter`; subject with the first"
        " name and the broadcast's name; a heading and two subheadings, seven short"
        " paragraphs (one only for gold-plan contacts, through an `{% if %}` on an"
        " attribute), a button, a blockquote, a 2×2 product grid (4 products with image,"
        " name, price and a button, static in the template), its own `<style>` block plus"
        " the base layout's, both inlined by css_inline; the text part derived from the HTML.",
        "- Broadcast at shop time, send date and time = now, to the segment (the template's"
        " topic applies). Recipient ids are handed out as `broadcasts_tick` does: pending and"
        " due, ordered by (send_at, pk), in batches of"
        f" {args.batch_size}; multi-process runs fork {w} workers, each with its own"
        " connection, fed from one queue. End to end = `broadcast_recipients_send(ids=…)`"
        " (share lock on the broadcast, recipients locked SKIP LOCKED, skip checks, send"
        " policy, render, Messages bulk-created, recipients updated in one statement) with"
        " its on-commit `messages_send_task` running eagerly, inline, right after the commit"
        " (claim and mark in chunks of 50, build, Anymail test backend), as a worker would"
        " run it next. messages/s = messages sent / wall seconds.",
        "- Between runs the recipients are put back to pending and the broadcast's messages"
        " deleted, then VACUUM ANALYZE. For the tick run the main broadcast is parked (its"
        " recipients and messages deleted) and another broadcast with the same template, to"
        f" the first {args.tick_recipients:,} contacts (their own static segment), is"
        " scheduled and left to `broadcasts_tick`; it too is parked afterwards.",
        f"- Expected for the main broadcast: {exp.get('queued', 0):,} queued and sent,"
        f" skipped {exp.get('skipped', {})}.",
    ]
    if get("recs1"):
        lines.append(
            f"- Recommendations run: a second broadcast to the first {args.recs_recipients:,}"
            " contacts (their own static segment), template `bench-newsletter-recs`: the same"
            " but the grid is `{% load keepers %}{% recommendations 4 as products %}` and a"
            f" loop. History for them: {h.get('orders', 0):,} orders with"
            f" {h.get('lines', 0):,} lines, {h.get('views', 0):,} `Product Viewed` events in"
            " the last 20 days, a 200-product catalog (8 out of stock), co-purchase and"
            f" bestseller tables refreshed ({h.get('refresh', {})}). The earlier broadcasts'"
            " messages are deleted first, so the frequency caps see the same as in run 2."
        )
    if get("sample_message"):
        sm = res["sample_message"]
        lines.append(sample_message_line(sm))
    lines += [
        "",
        "## Results",
        "",
        table(rows, header),
        "",
        f"“cores” is CPU seconds per wall second, out of {nproc}: the benchmark's Python"
        " processes / their PostgreSQL backends / everything else on the machine"
        " (PostgreSQL's WAL writer and checkpointer, the kernel, and any other work running"
        " at the same time). CPU per message = (Python + PostgreSQL backend CPU) / messages"
        " sent; for the freeze, per recipient row.",
        "",
    ]
    if fz:
        lines += [
            f"Freeze details: the preview staff confirm (`broadcast_preview`: count"
            f" {fz['preview_count']:,} and a sample) took {fz['preview_s'] * 1000:,.0f} ms;"
            f" `broadcast_schedule` {fz['schedule_s'] * 1000:,.0f} ms; `broadcast_start`"
            f" {fz['seconds']:.2f} s for {fz['ids']:,} rows.",
            "",
        ]
    if get("tick"):
        t = res["tick"]
        lines += [
            "Tick run: "
            + "; ".join(
                f"tick {i + 1}: started {x['started']}, handed out {x['handed_out']:,},"
                f" finished {x['finished']} in {x['seconds']:.1f} s"
                for i, x in enumerate(t.get("ticks", []))
            )
            + f". Broadcast status after: {t.get('status_after')}. (A tick hands out at most"
            " 50,000 ids; with eager Celery it runs their batches before it returns.)",
            "",
        ]
    lines += [
        "## Target",
        "",
        table(targets, ["target", "wanted", "measured", "verdict"]),
        "",
        "Judged on the better of the 1-process and the"
        f" {w}-process end-to-end runs (run 2). CPU cost per message from the 1-process runs"
        " (less disturbed by other work), and the rate it would allow if the work were"
        f" CPU-bound and spread perfectly over {nproc} idle cores (a ceiling: it ignores waits"
        " and PostgreSQL's background work):",
        "",
        table(
            ceiling,
            ["1-process run", "CPU per message (py + PG)", f"ceiling on {nproc} cores, per second"],
        ),
        "",
        *(["## Analysis", "", res["analysis"], ""] if get("analysis") else []),
        "## Checks",
        "",
    ]
    for key, label in (
        ("check_e2e1", "after run 2, 1 process"),
        ("check_e2ew", f"after run 2, {w} processes"),
        ("check_tick", "after the tick run"),
        ("check_recs1", "after the recommendations run"),
    ):
        c = get(key)
        if not c:
            continue
        lines.append(
            f"- {label}: {'**OK**' if c['ok'] else '**PROBLEMS: ' + '; '.join(c['problems']) + '**'}"
            f" — recipients {c['recipients']}, messages {c['messages']}, skip reasons"
            f" {c['skip_reasons']}, recipients with more than one message"
            f" {c['recipients_with_two_messages']}"
            + (
                f", outbox {c['outbox']:,} (duplicate message ids {c['outbox_duplicate_ids']},"
                f" duplicate addresses {c['outbox_duplicate_addresses']})"
                if "outbox" in c
                else ""
            )
        )
    lines += noisy_lines(res, args.phase_quiet_wait)
    busy = []
    for key, label in (
        ("freeze", "freeze"),
        ("e2e1", "end to end 1 process"),
        ("e2ew", f"end to end {w} processes"),
        ("tick", "tick loop"),
        ("recs1", "with recommendations"),
    ):
        v = get(key)
        if v and v.get("seconds"):
            other = (v["machine_cpu"] - v["python_cpu"] - v["pg_cpu"]) / v["seconds"]
            if other > 0.3:
                busy.append(f"{label} ({other:.2f} cores)")
    if busy:
        lines.append(
            "- Phases during which everything else on the machine used more than 0.3 cores"
            f" on average: {', '.join(busy)} (see the Analysis for what it was)."
        )
    lines += ["", "## Where the time goes (cProfile, one batch of 500, 1 process)", ""]
    for key, title in (
        ("prof", "main template (static grid)"),
        ("prof_recs", "with `{% recommendations 4 %}`"),
    ):
        p = get(key)
        if not p:
            continue
        lines += [
            f"### {title}: {p['ids']} recipients → {p['counts']}, {p['wall'] * 1000:,.0f} ms"
            f" wall under the profiler, {p['cpu'] * 1000:,.0f} ms Python CPU,"
            f" {p.get('pg_cpu', 0) * 1000:,.0f} ms CPU of its PostgreSQL backend",
            "",
            f"Queries: {p['queries']:,} for the batch ({p['queries_broadcast']:,} in"
            f" `broadcast_recipients_send` before its commit, {p['queries_send']:,} in the"
            f" inline `messages_send`), by kind {p['queries_by_kind']}.",
            "",
            table(
                [
                    [label, f"{calls:,}", f"{cum * 1000:,.0f}", f"{share:.0%}"]
                    for label, calls, cum, share in p["breakdown"]
                ],
                ["part (cumulative, nested parts marked ·)", "calls", "ms", "share of the batch"],
            ),
            "",
            *profile_lines(p),
        ]
    lines += [
        "## Command",
        "",
        "```",
        cmd,
        "```",
        "",
        "(`--recipients 5000` for a quick check; `--help` for the options.)",
    ]
    return console, "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipients", type=int, default=100_000)
    p.add_argument("--no-consent", type=int, default=300, help="contacts without consent")
    p.add_argument("--topic-out", type=int, default=300, help="contacts out of `newsletter`")
    p.add_argument("--suppressed", type=int, default=200, help="audience addresses suppressed")
    p.add_argument("--suppression-list", type=int, default=3_000, help="other addresses")
    p.add_argument("--recs-recipients", type=int, default=5_000, help="0: no recs run")
    p.add_argument(
        "--tick-recipients",
        type=int,
        default=20_000,
        help="audience of the broadcasts_tick run (the first N contacts); 0: no tick run",
    )
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument(
        "--template",
        choices=["html", "mjml"],
        default="html",
        help="mjml: the same newsletter built from the starter library's blocks",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=900, help="seconds per phase")
    add_common_flags(
        p,
        db="keepers_bench_broadcast",
        out=str(ROOT / "bench" / "results-broadcast.md"),
        waits_for_benchmarks=True,
    )
    args = p.parse_args()
    if args.report_from:
        report_rebuild(
            args, lambda saved: build_report(args, saved["info"], saved, saved.get("total_s", 0))
        )
        return

    began = time.perf_counter()
    info = machine()
    log(f"{info['nproc']} cores, {info['ram_gb']} GB, PostgreSQL {info['pg']}")
    setup_fresh(args.db, statement_timeout=args.statement_timeout)
    from django.db import connections

    from crm import clock

    loaded = load(args, clock.now())
    res: dict = {
        "load_seconds": loaded["seconds"],
        "zones": loaded["zones"],
        "suppressions": loaded["suppressions"],
        "expected": loaded["expected"],
        "history": loaded["history"],
    }
    res["other_benchmarks"] = wait_for_benchmarks(args.quiet_wait)
    res["quiet"] = wait_for_quiet(args.quiet_wait)
    log(f"machine before measuring: {res['quiet']}")
    bs, w, to = args.batch_size, args.workers, args.timeout
    res["git_start"] = git_state(UNDER_TEST)

    def save(partial: str | None = None) -> None:
        """Write what is measured so far: a run stopped from outside leaves a report."""
        report_save(args, res, info=info, began=began, build=build_report, partial=partial)

    def phase(key: str, name: str, fn, expected: dict | None = None, broadcast_id=None) -> dict:
        out = phase_run(
            name, fn, quiet_wait=args.phase_quiet_wait, counts=("queued", "sent", "skipped", "held")
        )
        if expected is not None:
            c = check(broadcast_id, expected, out)
            res["check_" + key] = c
            log(f"check: {'ok' if c['ok'] else c['problems']}")
        out.pop("_sent", None)
        res[key] = out
        save(name)
        return out

    from campaigns.models import Broadcast

    exp = loaded["expected"]
    main_id = broadcast_create(
        "May newsletter", loaded["templates"]["main"], loaded["segments"]["main"]
    )
    phase("freeze", "1. freeze (broadcast_start)", lambda: freeze(main_id))
    ids = due_ids(main_id)
    log(f"{len(ids):,} due recipients")
    phase(
        "e2e1",
        "2. end to end, 1 process",
        lambda: run_batches(ids, bs, 1, to),
        exp["main"],
        main_id,
    )
    res["sample_message"] = sample_message(broadcast_id=main_id)
    reset(args, main_id)
    phase(
        "e2ew",
        f"2. end to end, {w} processes",
        lambda: run_batches(ids, bs, w, to),
        exp["main"],
        main_id,
    )
    reset(args, main_id)
    log("profiling one batch …")
    res["prof"] = profile_batch(due_ids(main_id)[:bs])
    connections.close_all()
    # park the main broadcast (no recipients, no messages: nothing for a tick to hand out
    # or for the frequency caps to count)
    reset(args, main_id, unfreeze=True)
    Broadcast.objects.filter(pk=main_id).update(status="draft")
    if args.tick_recipients:
        from campaigns.services.broadcasts import broadcast_schedule

        tick_id = broadcast_create(
            "May newsletter (tick)", loaded["templates"]["main"], loaded["segments"]["tick"]
        )
        broadcast_schedule(broadcast=Broadcast.objects.get(pk=tick_id))
        phase(
            "tick",
            "3. broadcasts_tick loop, 1 process",
            lambda: tick_loop(tick_id, to, max_ticks=args.tick_recipients // 50_000 + 10),
            exp["tick"],
            tick_id,
        )
        reset(args, tick_id, unfreeze=True)
        Broadcast.objects.filter(pk=tick_id).update(status="draft")
    if args.recs_recipients:
        recs_id = broadcast_create(
            "May newsletter (recommendations)",
            loaded["templates"]["recs"],
            loaded["segments"]["recs"],
        )
        res["freeze_recs"] = freeze(recs_id)
        recs_ids = due_ids(recs_id)
        phase(
            "recs1",
            "with recommendations, 1 process",
            lambda: run_batches(recs_ids, bs, 1, to),
            exp["recs"],
            recs_id,
        )
        reset(args, recs_id)
        log("profiling one batch with recommendations …")
        res["prof_recs"] = profile_batch(due_ids(recs_id)[:bs])
        connections.close_all()

    if analysis := read_analysis(args):
        res["analysis"] = analysis
    res["git"] = git_state(UNDER_TEST, since=res["git_start"].get("commit"))
    save()


if __name__ == "__main__":
    main()
