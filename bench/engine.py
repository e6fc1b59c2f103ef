#!/usr/bin/env python
"""Campaign engine benchmark: enrollments advanced per second on PostgreSQL, with
Anymail's test backend, at 100,000 due enrollments, against a naive one-at-a-time loop.

    .venv/bin/python bench/engine.py                      # full scale, writes the report
    .venv/bin/python bench/engine.py --enrollments 5000   # a quick check

What it does, in one run:

1. drops and recreates `keepers_bench_engine` on 127.0.0.1:5432 (user postgres) and runs
   the migrations with `config.settings.test` (eager Celery, memory broker,
   EMAIL_BACKEND=anymail.backends.test.EmailBackend, checked);
2. loads with COPY: a 200-product catalog, N contacts (80% stage subscriber, the rest
   customers) each with a granted email/all consent record and a "Checkout Started" event
   carrying a cart of 1-4 products (the template enriches them from the catalog), and two
   published campaigns:
   - (a) `bench-wait`: condition (rule: stage in [subscriber]) → yes: wait 1 day,
     no: wait 2 days → exit;
   - (b) `bench-send`: send_email (a marketing cart reminder: paragraphs, a loop over the
     cart's items, its own <style> plus the base layout's CSS, both inlined) → wait 1 day
     → exit;
   with N due enrollments each (active, next_run_at in the past, on the first step, on
   the published version, one trigger key per row), plus a sample for the naive loop and
   a batch for profiling; then VACUUM ANALYZE;
3. (a) advances all N in batches of 500 (as engine_tick hands them out) through
   `enrollments_advance(ids=…)`, in 1 process, then again (after putting the rows back
   as they were) in W processes (fork; each its own connection); then the naive loop:
   `enrollments_advance(ids=[one])` per enrollment over the sample, extrapolated;
4. (b) the same end to end (advance, and the on-commit sending task running eagerly:
   render → store → `messages_send` → Anymail test backend), 1 and W processes; then the
   two phases apart in W processes: advance with the on-commit send switched off (messages
   stay queued), then `messages_send(ids=…)` over the queued ids in batches of 500; then
   the naive loop end to end;
5. profiles one batch of each kind with cProfile (and counts its queries), and EXPLAINs the
   send-time suppression lookup (a 3% suppression list of other addresses is loaded);
6. prints a table and writes bench/results-engine.md.

Contact time zones are picked where it is daytime at load (outside the default quiet
hours), and each enrollment set has its own contacts (no frequency cap), so every message
may go at once; the send policy is still evaluated for each. Before each phase the script
waits (--phase-quiet-wait) for other work on the machine to stop, and reports the CPU it
could not avoid sharing ("other" cores) and the CPU per item, which other work disturbs
less than wall-clock rates.

django.core.mail.outbox is cleared after every batch: the test backend appends every
message to it and looks each one up with outbox.index(), which would grow without bound.
Only 127.0.0.1 is contacted. Every loop is bounded (--timeout per phase) and every
statement has a timeout. What the benchmarks share (database and Django setup, the
catalog and contacts, CPU accounting, batches in forked processes, report pieces) is in
bench/harness.py.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import random
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
    wait_for_quiet,
)

TEMPLATE_SUBJECT = (
    "{{ first_name|default:'Hi' }}, you left {{ event.properties.items|length }} "
    "item{{ event.properties.items|length|pluralize }} in your cart"
)
TEMPLATE_PREHEADER = "Your cart at {{ shop.name }} is saved for 48 hours. Free returns, always."
TEMPLATE_HTML = """<style>
  h1 { font-size: 24px; margin: 0 0 16px; color: #2f4858; }
  table.cart { width: 100%; border-collapse: collapse; margin: 16px 0; }
  table.cart td { padding: 8px 4px; border-bottom: 1px solid #eee; vertical-align: middle; }
  td.thumb img { display: block; border-radius: 4px; }
  td.item a { color: #222; font-weight: bold; text-decoration: none; }
  td.price { text-align: right; white-space: nowrap; }
  span.qty { color: #666; font-size: 13px; }
  p.small { font-size: 13px; color: #666; }
</style>
<h1>Still thinking it over, {{ first_name|default:"friend" }}?</h1>
<p>We saved your cart at {{ shop.name }}. Popular items sell out quickly, so here is
what you picked, ready when you are:</p>
<table class="cart" role="presentation" cellpadding="0" cellspacing="0">
{% for item in event.properties.items %}
  <tr>
    <td class="thumb"><a href="{{ item.url }}"><img src="{{ item.image_url }}" alt="{{ item.name }}" width="80" height="80"></a></td>
    <td class="item"><a href="{{ item.url }}">{{ item.name }}</a><br><span class="qty">Quantity: {{ item.quantity }}</span></td>
    <td class="price">${{ item.price|floatformat:2 }}</td>
  </tr>
{% endfor %}
</table>
<p><a class="button" href="{{ shop.url }}/cart?c={{ event.properties.cart_id|urlencode }}">Return to your cart</a></p>
<p>Orders over $50 ship free, and every order can be returned within 30 days, no
questions asked. Not sure about the size or colour? Our guides on each product page show
measurements and real customer photos.</p>
<p>Questions about delivery? Just reply to this email: a real person on our team reads
every message and answers within a day.</p>
{% if attributes.plan == "gold" %}<p><strong>Gold member:</strong> this order earns you double points.</p>{% endif %}
<p>See you soon,<br>The {{ shop.name }} team</p>
<p class="small">Prices shown were those when you added the items; they may have changed since.</p>
"""

WAIT_STEPS = [
    {
        "id": "is-subscriber",
        "type": "condition",
        "config": {
            "kind": "rule",
            "rule": {"type": "field", "field": "stage", "op": "in", "value": ["subscriber"]},
        },
        "yes": "wait-1d",
        "no": "wait-2d",
    },
    {"id": "wait-1d", "type": "wait", "config": {"days": 1}, "next": "done"},
    {"id": "wait-2d", "type": "wait", "config": {"days": 2}, "next": "done"},
    {"id": "done", "type": "exit", "config": {"reason": "sequence finished"}},
]
SEND_STEPS = [
    {
        "id": "reminder",
        "type": "send_email",
        "config": {"template": "bench-cart"},
        "next": "wait-1d",
    },
    {"id": "wait-1d", "type": "wait", "config": {"days": 1}, "next": "done"},
    {"id": "done", "type": "exit", "config": {"reason": "sequence finished"}},
]


# ------------------------------------------------------------------------------------------
# Setup
# ------------------------------------------------------------------------------------------
def load(args, now: datetime) -> dict:
    """Catalog, contacts, consents, cart events (COPY); templates and campaigns (ORM);
    enrollments (COPY). Returns the ids the phases run on."""
    from campaigns.models import Campaign, EmailTemplate
    from campaigns.services.definitions import campaign_publish
    from crm.services.privacy import address_hash

    rng = random.Random(args.seed)
    n, sample, prof = args.enrollments, args.naive_sample, args.batch_size
    # a contact per enrollment of each set (main, naive sample, profile batch): no frequency
    # cap between sets; the two campaigns share them
    contacts_n = n + sample + prof
    zones = daytime_zones(now)
    t0 = time.perf_counter()
    mjml = args.template == "mjml"
    EmailTemplate.objects.create(
        name="bench-cart",
        category="marketing",
        subject=TEMPLATE_SUBJECT,
        preheader=TEMPLATE_PREHEADER,
        format="mjml" if mjml else "html",
        mjml_body=mjml_bench_template("cart") if mjml else "",
        html_body="" if mjml else TEMPLATE_HTML,
    )
    conn = pg(args.db)
    set_statement_timeout(conn)
    stamp = now - timedelta(days=30)
    with conn.cursor() as cur:
        copy_products(cur, rng, stamp)
        contact_ids = copy_contacts(cur, rng, contacts_n, email="bench", zones=zones, stamp=stamp)
        with cur.copy(
            "COPY crm_consentrecord (contact_id, channel, topic, status, source, user_agent,"
            " wording_version, recorded_at) FROM STDIN"
        ) as copy:
            for cid in contact_ids:
                copy.write_row((cid, "email", "all", "granted", "bench", "", "v1", stamp))
        occurred = now - timedelta(hours=2)
        with cur.copy(COPY_EVENTS) as copy:
            for i, cid in enumerate(contact_ids):
                items = [
                    {"product_id": f"SKU-{rng.randrange(200):05d}", "quantity": rng.randint(1, 3)}
                    for _ in range(rng.randint(1, 4))
                ]
                props = {"cart_id": f"cart-{i}", "products": items, "currency": "USD"}
                copy.write_row(
                    (
                        cid,
                        "",
                        "Checkout Started",
                        json.dumps(props),
                        "{}",
                        occurred,
                        occurred,
                        "bench",
                        f"bench-co-{i}",
                    )
                )
        cur.execute("SELECT contact_id, id FROM crm_event")
        event_of = dict(cur.fetchall())
        # a suppression list (bounces, complaints) of other addresses: checked for every send
        with cur.copy(
            "COPY campaigns_suppression (email, email_hash, reason, source, detail, created_at, lift_note)"
            " FROM STDIN"
        ) as copy:
            for i in range(int(n * args.suppressed_share)):
                address = f"Gone-{i}@Example.org"
                copy.write_row(
                    (address, address_hash(address), "hard_bounce", "bench", "", stamp, "")
                )
    conn.commit()

    campaigns = {}
    for key, name, steps in (("a", "bench-wait", WAIT_STEPS), ("b", "bench-send", SEND_STEPS)):
        campaign = Campaign.objects.create(
            name=name,
            trigger={"type": "event", "name": "Checkout Started"},
            reentry="always",
            steps=steps,
        )
        version = campaign_publish(campaign=campaign)
        campaigns[key] = (campaign.pk, version.pk, steps[0]["id"])

    due = now - timedelta(hours=1)
    ids: dict[str, dict[str, list[int]]] = {}
    with conn.cursor() as cur:
        for key, (campaign_id, version_id, first) in campaigns.items():
            ids[key] = {}
            for part, count, offset in (
                ("main", n, 0),
                ("naive", sample, n),
                ("profile", prof, n + sample),
            ):
                with cur.copy(
                    "COPY campaigns_enrollment (campaign_id, version_id, contact_id, status,"
                    " current_step, next_run_at, entered_at, holdout, trigger_key,"
                    " trigger_event_id, state, exit_reason, waiting_for) FROM STDIN"
                ) as copy:
                    for i in range(count):
                        cid = contact_ids[offset + i]
                        copy.write_row(
                            (
                                campaign_id,
                                version_id,
                                cid,
                                "active",
                                first,
                                due,
                                due,
                                False,
                                f"{part}:{i}",
                                event_of[cid],
                                "{}",
                                "",
                                "",
                            )
                        )
                cur.execute(
                    "SELECT id FROM campaigns_enrollment WHERE campaign_id = %s"
                    " AND trigger_key LIKE %s ORDER BY id",
                    (campaign_id, f"{part}:%"),
                )
                ids[key][part] = [r[0] for r in cur.fetchall()]
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    conn.close()
    seconds = time.perf_counter() - t0
    log(
        f"loaded {contacts_n:,} contacts and {2 * (n + sample + prof):,} enrollments in {seconds:.1f} s"
    )
    return {
        "campaigns": campaigns,
        "ids": ids,
        "seconds": seconds,
        "due": due,
        "zones": zones,
        "suppressions": int(n * args.suppressed_share),
    }


def reset(args, campaign_id: int, first_step: str, due: datetime) -> None:
    """Put a campaign's enrollments back on their first step, due; forget their history."""
    with pg(args.db, autocommit=True) as conn:
        set_statement_timeout(conn)
        conn.execute(
            "DELETE FROM campaigns_steprun WHERE enrollment_id IN"
            " (SELECT id FROM campaigns_enrollment WHERE campaign_id = %s)",
            (campaign_id,),
        )
        conn.execute("DELETE FROM campaigns_message WHERE campaign_id = %s", (campaign_id,))
        conn.execute(
            "UPDATE campaigns_enrollment SET status = 'active', current_step = %s,"
            " next_run_at = %s, finished_at = NULL, state = '{}', exit_reason = '',"
            " waiting_for = '' WHERE campaign_id = %s",
            (first_step, due, campaign_id),
        )
        conn.execute("VACUUM ANALYZE campaigns_enrollment, campaigns_steprun, campaigns_message")


# ------------------------------------------------------------------------------------------
# Measurement
# ------------------------------------------------------------------------------------------
class NoSend:
    """Switch off the on-commit sending task (messages stay queued)."""

    def __enter__(self):
        from campaigns.services import engine

        self._saved = engine._after_commit
        engine._after_commit = lambda message_ids, webhook_ids: None
        return self

    def __exit__(self, *exc):
        from campaigns.services import engine

        engine._after_commit = self._saved


def _work(job: tuple[str, list[int]]) -> BatchRun:
    """One batch: (kind, ids) → its counts, wall time and CPU (this process, its PostgreSQL
    backend)."""
    from django.core import mail

    from campaigns.services import sending
    from campaigns.services.engine import enrollments_advance

    kind, ids = job
    with Meter() as m:
        # "send" reads the service from its module, as the sending task does when it runs
        counts = (
            enrollments_advance(ids=ids) if kind == "advance" else sending.messages_send(ids=ids)
        )
    outbox = getattr(mail, "outbox", [])
    if kind == "advance":
        counts = {**counts, "sent": len(outbox)}  # sent by the on-commit task, end to end
    outbox.clear()  # the test backend's outbox: see the module docstring
    return BatchRun(counts, len(ids), m.seconds, m.python_cpu, m.pg_cpu)


def run_batches(kind: str, ids: list[int], batch_size: int, workers: int, timeout: float) -> dict:
    """All ids in batches, in this process or in `workers` forked processes. Bounded."""
    batches = [(kind, ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)]
    figures, _items = harness.run_batches(_work, batches, workers=workers, timeout=timeout)
    return {"kind": kind, **figures}


def naive_loop(kind: str, ids: list[int], timeout: float) -> dict:
    """One enrollment (or message) per call, in this process. Bounded."""
    res = run_batches(kind, ids, 1, 1, timeout)
    return res


def state_summary(campaign_id: int) -> dict:
    from django.db.models import Count

    from campaigns.models import Enrollment, Message, StepRun

    enrollments = dict(
        Enrollment.objects.filter(campaign_id=campaign_id)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    messages = dict(
        Message.objects.filter(campaign_id=campaign_id)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    runs = StepRun.objects.filter(enrollment__campaign_id=campaign_id).count()
    failed_runs = StepRun.objects.filter(enrollment__campaign_id=campaign_id).exclude(error="")
    return {
        "enrollments": enrollments,
        "messages": messages,
        "step_runs": runs,
        "errors": list(failed_runs.values_list("error", flat=True)[:3]),
    }


def profile_batch(kind: str, ids: list[int], *, send_inline: bool) -> dict:
    """cProfile and query count of one batch, in this process."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    prof = cProfile.Profile()
    c0, t0 = time.process_time(), time.perf_counter()
    ctx = contextlib.nullcontext() if send_inline or kind == "send" else NoSend()
    with ctx, CaptureQueriesContext(connection) as queries:
        prof.enable()
        counts = _work((kind, ids)).counts
        prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "ids": len(ids),
        "wall": wall,
        "cpu": cpu,
        "queries": len(queries.captured_queries),
        "queries_by_kind": query_kinds(queries.captured_queries),
        "counts": counts,
        **profile_tops(prof, 28),
    }


def explain_suppression(batch_size: int) -> str:
    """EXPLAIN ANALYZE of skip_reasons' suppression lookup for one batch of addresses."""
    from campaigns.models import Suppression

    emails = {f"bench-{i}@example.com" for i in range(batch_size)} | {"gone-1@example.org"}
    query = Suppression.objects.filter(email__in=emails, lifted_at__isnull=True).values_list(
        "email", "reason"
    )
    return query.explain(analyze=True)


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
def fmt_x(x: float | None) -> str:
    return "–" if x is None else f"{x:,.1f}×"


def build_report(args, info: dict, res: dict, total_s: float) -> tuple[str, str]:
    n, w = args.enrollments, args.workers
    get = res.get

    def r(key: str, unit: str = "ids") -> float | None:
        return rate(get(key), unit)

    def ratio(x: float | None, y: float | None) -> float | None:
        return x / y if x and y else None

    def best(*xs: float | None) -> float | None:
        return max((x for x in xs if x), default=None)

    def naive_note(key: str, unit: str) -> str:
        x = r(key, unit)
        return f"sample; {n:,} would take {n / x / 60:,.1f} min" if x else "sample"

    def steps_note(key: str) -> str:
        return f"{get(key, {}).get('steps', 0):,} steps" if get(key) else ""

    def sent_note(key: str, word: str = "sent") -> str:
        return f"{get(key, {}).get(word, 0):,} {word}" if get(key) else ""

    header = [
        "run",
        "done",
        "seconds",
        "per second",
        "median batch",
        "cores: python / PG / other",
        "CPU per item (py + PG)",
        "note",
    ]
    rows = [
        row("(a) advance, batches of 500, 1 process", get("a1"), "ids", steps_note("a1")),
        row(f"(a) advance, batches of 500, {w} processes", get("aw"), "ids", steps_note("aw")),
        row(
            "(a) naive: one enrollment per call",
            get("a_naive"),
            "ids",
            naive_note("a_naive", "ids"),
        ),
        row("(b) advance + send end to end, 1 process", get("b1"), "sent", sent_note("b1")),
        row(f"(b) advance + send end to end, {w} processes", get("bw"), "sent", sent_note("bw")),
        row(
            f"(b) phase 1 alone: advance (render, store queued), {w} processes",
            get("b_adv"),
            "ids",
            sent_note("b_adv", "messages") + " queued",
        ),
        row(
            f"(b) phase 2 alone: messages_send over the queued ids, {w} processes",
            get("b_send"),
            "sent",
            sent_note("b_send"),
        ),
        row(
            "(b) naive: one enrollment per call, end to end",
            get("b_naive"),
            "sent",
            naive_note("b_naive", "sent"),
        ),
    ]
    a_best = best(r("a1"), r("aw"))
    b_best = best(r("b1", "sent"), r("bw", "sent"))
    a_n, b_n = r("a_naive"), r("b_naive", "sent")
    a_x1, a_xw = ratio(r("a1"), a_n), ratio(r("aw"), a_n)
    b_x1, b_xw = ratio(r("b1", "sent"), b_n), ratio(r("bw", "sent"), b_n)
    measured = [
        [fmt_rate(a_best), verdict(a_best and a_best >= 5000)],
        [fmt_x(a_x1), verdict(a_x1 and a_x1 >= 10)],
        [fmt_x(a_xw), verdict(a_xw and a_xw >= 10)],
        [fmt_rate(b_best), verdict(b_best and b_best >= 500)],
        [fmt_x(b_x1), verdict(b_x1 and b_x1 >= 10)],
        [fmt_x(b_xw), verdict(b_xw and b_xw >= 10)],
    ]
    names = [
        ["(a) wait/condition: enrollments/s", "≥ 5,000"],
        ["(a) vs naive loop, 1 process", "≥ 10×"],
        [f"(a) vs naive loop, {w} processes", "≥ 10×"],
        ["(b) send_email end to end: messages/s", "≥ 500"],
        ["(b) vs naive loop, 1 process", "≥ 10×"],
        [f"(b) vs naive loop, {w} processes", "≥ 10×"],
    ]
    t_header = ["target", "wanted", "measured (app as is)", "verdict"]
    targets = [a + b for a, b in zip(names, measured, strict=True)]
    nproc = info["nproc"]
    est_rows = []
    for key, label, unit in (
        ("a1", "(a) batches, app as is", "ids"),
        ("a_naive", "(a) naive loop, app as is", "ids"),
        ("b1", "(b) end to end, app as is", "sent"),
        ("b_naive", "(b) naive loop, app as is", "sent"),
    ):
        if get(key):
            est_rows.append(
                [
                    label,
                    cpu_per_item(res[key], unit),
                    fmt_rate(cpu_bound_rate(res[key], unit, nproc)),
                ]
            )
    est_header = [
        "1-process run",
        "CPU per item (py + PG)",
        f"CPU-bound ceiling on {nproc} idle cores, per second",
    ]
    console = (
        table(rows, header)
        + "\n\n"
        + table(targets, t_header)
        + "\n\n"
        + table(est_rows, est_header)
    )

    cmd = " ".join([".venv/bin/python", "bench/engine.py", *res.get("argv", sys.argv[1:])])
    lines = [
        "# Campaign engine benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M UTC} with `{cmd}` ({total_s / 60:.1f} min in"
        f" all, load {res['load_seconds']:.0f} s).",
        "",
        *([f"**Partial report: {res['partial']}.**", ""] if res.get("partial") else []),
        "## Machine",
        "",
        *machine_lines(info),
        quiet_line(res["quiet"]),
        f"- Python {info['python']}, Django {info['django']}, settings `config.settings.test`"
        " (Celery eager), EMAIL_BACKEND `anymail.backends.test.EmailBackend`",
        "",
        "## Setup",
        "",
        f"- {n:,} contacts (80% stage subscriber), each with a granted email/all consent"
        " record and a `Checkout Started` event with a cart of 1–4 products from a"
        " 200-product catalog.",
        f"- Contact time zones: {', '.join(res.get('zones', []))} — those of a list of 20"
        " where it was 09:00–14:00 at load, so nobody is inside the default quiet hours"
        " (21:00–08:00) during the run; the send policy (caps, quiet hours, preferences) is"
        " still evaluated for every message. Each enrollment set (main, naive sample,"
        " profile batch) has its own contacts, so no frequency cap holds a message.",
        f"- A suppression list of {res.get('suppressions', 0):,} other addresses (hard"
        " bounces), checked for every message sent.",
        f"- {n:,} due enrollments per campaign, inserted with COPY: active, next_run_at an hour"
        " ago, on the first step of the published version, a unique trigger key each; a"
        " separate sample for the naive loop and a batch for profiling. Before every run"
        " after the first, the campaign's rows are put back as they were (step runs and"
        " messages deleted, VACUUM ANALYZE).",
        "- (a) `condition` (rule `stage in [subscriber]`) → `wait` 1 day (yes) / 2 days (no):"
        " two steps and two StepRuns per enrollment.",
        "- (b) `send_email` (marketing template `bench-cart`: heading, a loop over the cart's"
        " items enriched from the catalog, four paragraphs, a `<style>` block of its own plus"
        " the base layout's, inlined by css_inline; text part derived from the HTML) →"
        " `wait` 1 day. Sending: `messages_send` → Anymail test backend (consent checked,"
        " List-Unsubscribe headers). End to end = `enrollments_advance` with its on-commit"
        " `messages_send_task` running eagerly, inline, right after the commit (as a worker"
        " would run it next).",
        f"- The (b) phases-apart runs use the first {min(args.split_enrollments, n):,}"
        " enrollments.",
        f"- Batches of {args.batch_size} ids, as `engine_tick` hands them out; multi-process"
        f" runs fork {w} workers, each with its own connection, fed from one queue.",
        "- Naive loop: `enrollments_advance(ids=[one_id])` per enrollment (end to end for"
        f" (b)), on {args.naive_sample:,} enrollments, rate extrapolated.",
        "- `django.core.mail.outbox` is cleared after every batch (the test backend keeps"
        " every message and looks each up with `outbox.index()`).",
    ]
    if get("sample_message"):
        sm = res["sample_message"]
        lines.append(sample_message_line(sm))
    lines += [
        "",
        "## Results (the app as it is)",
        "",
        table(rows, header),
        "",
        "“cores” is CPU seconds per wall second, out of"
        f" {info['nproc']}: the benchmark's Python processes / their PostgreSQL backends /"
        " everything else on the machine (PostgreSQL's WAL writer and checkpointer, the"
        " kernel, and any other work running at the same time).",
        "",
    ]
    lines += [
        "## Targets",
        "",
        table(targets, t_header),
        "",
        "Throughput is judged on the better of 1 and multi-process; the speed-up against the"
        " naive loop (one process) is given both for 1 process (like for like) and for the"
        " multi-process run.",
        "",
        "CPU cost per item, from the 1-process runs (so less disturbed by other work on the"
        " machine), and the rate it allows if the work were CPU-bound and spread perfectly"
        f" over {nproc} idle cores (a ceiling: it ignores waits and PostgreSQL's background"
        " work):",
        "",
        table(est_rows, est_header),
        "",
        *(["## Analysis", "", res["analysis"], ""] if get("analysis") else []),
        "## Checks",
        "",
    ]
    for key, label in (
        ("a_state", "(a) after its last run"),
        ("b_state", "(b) after the runs of the app as it is"),
    ):
        st = get(key)
        if st:
            lines.append(
                f"- {label}: enrollments {st['enrollments']}, messages {st['messages']},"
                f" {st['step_runs']:,} step runs"
                + (f", errors {st['errors']}" if st["errors"] else "")
            )
    lines += noisy_lines(res, args.phase_quiet_wait)
    lines += ["", "## Where the time goes (cProfile, one batch, 1 process, the app as it is)", ""]
    for key, title in (
        ("prof_a", "(a) advance, wait/condition"),
        ("prof_b_adv", "(b) advance only (render + store queued)"),
        ("prof_b_send", "(b) messages_send"),
    ):
        p = get(key)
        if not p:
            continue
        lines += [
            f"### {title}: {p['ids']} ids, {p['wall'] * 1000:,.0f} ms wall under the profiler,"
            f" {p['cpu'] * 1000:,.0f} ms Python CPU, {p['queries']:,} queries"
            f" {p['queries_by_kind']}",
            "",
            *profile_lines(p),
        ]
    if get("explain_suppression"):
        plan = "\n".join(
            line if len(line) <= 200 else line[:160] + " … (cut)"
            for line in res["explain_suppression"].splitlines()
        )
        lines += [
            "### The send-time suppression lookup (`skip_reasons`, once per batch)",
            "",
            "```",
            plan,
            "```",
            "",
        ]
    return console, "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--enrollments", type=int, default=100_000)
    p.add_argument("--naive-sample", type=int, default=2_000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument(
        "--template",
        choices=["html", "mjml"],
        default="html",
        help="mjml: the same cart email built from the starter library's blocks",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--suppressed-share",
        type=float,
        default=0.03,
        help="suppression list size, as a share of --enrollments (other addresses)",
    )
    p.add_argument("--timeout", type=float, default=1200, help="seconds per phase")
    p.add_argument(
        "--split-enrollments",
        type=int,
        default=20_000,
        help="how many enrollments the (b) phases-apart runs advance and send",
    )
    add_common_flags(
        p,
        db="keepers_bench_engine",
        out=str(ROOT / "bench" / "results-engine.md"),
        waits_for_benchmarks=False,
    )
    args = p.parse_args()
    if args.report_from:
        report_rebuild(
            args,
            lambda saved: build_report(
                args, saved.get("info") or machine(), saved, saved.get("total_s", 0)
            ),
        )
        return

    began = time.perf_counter()
    info = machine()
    log(f"{info['nproc']} cores, {info['ram_gb']} GB, PostgreSQL {info['pg']}")
    setup_fresh(args.db, statement_timeout=args.statement_timeout)
    from django.db import connections

    from crm import clock

    loaded = load(args, clock.now())
    ids, camps, due = loaded["ids"], loaded["campaigns"], loaded["due"]
    res: dict = {
        "load_seconds": loaded["seconds"],
        "zones": loaded["zones"],
        "suppressions": loaded["suppressions"],
    }
    res["quiet"] = wait_for_quiet(args.quiet_wait)
    log(f"machine before measuring: {res['quiet']}")
    bs, w, to = args.batch_size, args.workers, args.timeout

    def save(partial: str | None = None) -> None:
        """Write what is measured so far: a run stopped from outside leaves a report."""
        report_save(args, res, info=info, began=began, build=build_report, partial=partial)

    def phase(key: str, name: str, fn) -> dict:
        out = phase_run(
            name,
            fn,
            quiet_wait=args.phase_quiet_wait,
            counts=("advanced", "steps", "messages", "sent", "skipped", "failed"),
        )
        res[key] = out
        save(name)
        return out

    # (a) wait / condition
    ca, _cva, first_a = camps["a"]
    phase("a1", "(a) 1 process", lambda: run_batches("advance", ids["a"]["main"], bs, 1, to))
    reset(args, ca, first_a, due)
    phase("aw", f"(a) {w} processes", lambda: run_batches("advance", ids["a"]["main"], bs, w, to))
    phase("a_naive", "(a) naive", lambda: naive_loop("advance", ids["a"]["naive"], to))
    res["a_state"] = state_summary(ca)

    # (b) send_email
    cb, _cvb, first_b = camps["b"]
    phase(
        "b1",
        "(b) end to end, 1 process",
        lambda: run_batches("advance", ids["b"]["main"], bs, 1, to),
    )
    res["sample_message"] = sample_message()
    reset(args, cb, first_b, due)
    phase(
        "bw",
        f"(b) end to end, {w} processes",
        lambda: run_batches("advance", ids["b"]["main"], bs, w, to),
    )
    reset(args, cb, first_b, due)
    split_ids = ids["b"]["main"][: args.split_enrollments]
    with NoSend():
        phase(
            "b_adv",
            f"(b) advance only, {w} processes",
            lambda: run_batches("advance", split_ids, bs, w, to),
        )
    from campaigns.models import Message

    queued = list(
        Message.objects.filter(campaign_id=cb, enrollment_id__in=split_ids, status="queued")
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    connections.close_all()
    phase(
        "b_send",
        f"(b) messages_send, {w} processes",
        lambda: run_batches("send", queued, bs, w, to),
    )
    phase("b_naive", "(b) naive end to end", lambda: naive_loop("advance", ids["b"]["naive"], to))
    res["b_state"] = state_summary(cb)

    res["explain_suppression"] = explain_suppression(bs)
    # profiles (1 process, one batch each)
    log("profiling one batch of each kind …")
    res["prof_a"] = profile_batch("advance", ids["a"]["profile"], send_inline=True)
    res["prof_b_adv"] = profile_batch("advance", ids["b"]["profile"], send_inline=False)
    prof_queued = list(
        Message.objects.filter(enrollment_id__in=ids["b"]["profile"], status="queued").values_list(
            "pk", flat=True
        )
    )
    res["prof_b_send"] = profile_batch("send", prof_queued, send_inline=False)
    connections.close_all()

    if analysis := read_analysis(args):
        res["analysis"] = analysis
    save()


if __name__ == "__main__":
    main()
