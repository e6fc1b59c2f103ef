#!/usr/bin/env python
"""Metrics benchmark: the summary for a year, the 24-month cohort table, the
BG/NBD + Gamma-Gamma fit and the funnel on 1,000,000 contacts and 3,000,000 orders in
PostgreSQL. Targets: summary < 3 s, cohorts < 5 s, fit < 60 s.

    .venv/bin/python bench/metrics.py                                  # full scale, writes the report
    .venv/bin/python bench/metrics.py --contacts 20000 --orders 60000  # a quick check

What it does, in one run:

1. drops and recreates `keepers_bench_metrics` on 127.0.0.1:5432 (user postgres) and runs
   the migrations with `config.settings.test`;
2. simulates a shop in numpy and loads it with COPY (secondary indexes and foreign keys
   dropped during the load and rebuilt after):
   - N contacts created over --years (more recently more: the density grows linearly
     from 0.5 to 1.5), acquisition channels as in the demo (paid_search 22%, organic 25%,
     social 18%, email 10%, referral 10%, direct 15%), IANA time zones and locales;
   - orders from a BG/NBD world: a contact's first order comes at signup (45%) or after an
     exponential wait (mean 4 weeks); then, per customer, purchases at a Poisson rate
     λ ~ Gamma(r, α) per week, and after each purchase the customer drops out with
     probability p ~ Beta(a, b); spend per order z ~ Gamma(p_gg, ν) with ν ~ Gamma(q, γ)
     per customer (the Gamma-Gamma model); contacts become customers in random order until
     M orders are placed (the rest never order); 1% of orders fully refunded, 2% partly;
     all in KEEPERS_BASE_CURRENCY; stored in the order they were placed;
   - the lifecycle history as StageChange rows (created → subscriber; unengaged 90 days
     after signup without an order; first_time / repeat / loyal at the 1st / 2nd / 4th
     order; at_risk 90 and lapsed 180 days after an order with none after it), the
     contacts' stage being the last one;
   - marketing spend per paid channel and month (new customers × a CAC per channel);
   - `Page Viewed` events (70% of contacts, 30% anonymous) and CSAT and NPS survey answers;
   then VACUUM ANALYZE;
3. measures, each --repeat times cold (Django's cache cleared: the figures computed) and
   once warm (a second call: served from the cache), in this process, with the CPU of
   this process, of its PostgreSQL backend, of PostgreSQL's parallel workers and of the
   whole machine:
   - `metrics_summary(start, end)` for the last full calendar year;
   - `cohorts(24)`;
   - `clv_fit(as_of=today)` (read the orders, summary, both fits, predictions, the
     per-contact upserts), --fit-repeat times (the first writes every ContactClv row, the
     later ones update them, as the nightly fit does), split by timing wrappers put
     around crm.clv's functions and the service's read/store steps for those runs (the
     app's code is not changed); then the same pieces called one by one
     (transactions_from_orders, rfm_summary, fit_bgnbd, fit_gamma_gamma, the predictions);
   - `funnel(start, end)` for the same year;
4. EXPLAIN (ANALYZE, BUFFERS) of the summary's main query, of the cohort query and of the
   fit's order read (the SQL captured while they ran, with the planner settings they set);
5. prints a table and writes bench/results-metrics.md.

What the benchmarks share (database and Django setup, machine info, CPU accounting,
waiting for a quiet machine and for other benchmarks, git state, report pieces) is in
bench/harness.py, with dropping and rebuilding secondary indexes around the load. Only
127.0.0.1 is contacted; every statement has a timeout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime

# bench/harness.py: this script's directory is first on sys.path when it is run
import harness
import numpy as np
from harness import (
    COPY_EVENTS,
    FIRST_NAMES,
    LAST_NAMES,
    ROOT,
    Meter,
    add_common_flags,
    backend_pid,
    cpu_seconds,
    drop_secondary,
    git_state,
    log,
    machine,
    machine_lines,
    pg,
    proc_stat,
    quiet_line,
    read_analysis,
    report_rebuild,
    report_save,
    restore_secondary,
    set_statement_timeout,
    setup_fresh,
    table,
    verdict,
    wait_for_benchmarks,
    wait_for_quiet,
)

TARGETS = {"summary": 3.0, "cohorts": 5.0, "fit": 60.0}  # seconds (docs/benchmarks.md)
WEEK = 7 * 86400.0
DAY = 86400.0

CHANNELS = [  # as the demo's (crm/services/demo.py), weights in %
    ("paid_search", 22),
    ("organic", 25),
    ("social", 18),
    ("email", 10),
    ("referral", 10),
    ("direct", 15),
]
CAC = {"paid_search": 38.0, "social": 45.0, "email": 6.0, "referral": 20.0}  # $ per new customer
TIMEZONES = [  # (IANA zone, weight)
    ("America/New_York", 22),
    ("America/Chicago", 12),
    ("America/Denver", 5),
    ("America/Los_Angeles", 14),
    ("America/Sao_Paulo", 4),
    ("Europe/London", 10),
    ("Europe/Paris", 7),
    ("Europe/Berlin", 7),
    ("Europe/Madrid", 3),
    ("Asia/Tokyo", 5),
    ("Asia/Kolkata", 3),
    ("Australia/Sydney", 5),
    ("Pacific/Auckland", 1),
    ("Asia/Singapore", 2),
]
LOCALES = {"America": "en-US", "Europe/London": "en-GB", "Europe/Paris": "fr-FR"}
SOURCES = ["signup", "checkout", "import", "api"]
# the lifecycle stages (crm.models.Stage), as codes for numpy
STAGES = ["", "subscriber", "first_time", "repeat", "loyal", "at_risk", "lapsed", "unengaged"]
NONE, SUB, FIRST_TIME, REPEAT, LOYAL, AT_RISK, LAPSED, UNENGAGED = range(len(STAGES))
CSAT_SCORES = ([1, 2, 3, 4, 5], [0.05, 0.07, 0.13, 0.35, 0.40])
NPS_SCORES = (list(range(11)), [0.02, 0.01, 0.02, 0.03, 0.04, 0.05, 0.08, 0.13, 0.17, 0.20, 0.25])
UNDER_TEST = [  # the code the measured calls run
    "crm/services/metrics.py",
    "crm/services/clv_fits.py",
    "crm/clv.py",
    "crm/models.py",
    "campaigns/models.py",
    "config/settings",
]


def weighted_choice(rng: np.random.Generator, pairs, n: int) -> np.ndarray:
    weights = np.array([w for _v, w in pairs], dtype=np.float64)
    return rng.choice(len(pairs), size=n, p=weights / weights.sum())


# ------------------------------------------------------------------------------------------
# Simulation (numpy): contacts, orders, stage history
# ------------------------------------------------------------------------------------------
def simulate(args, now: datetime) -> dict:
    """The shop's history up to `now`, as arrays (times in epoch seconds, UTC)."""
    rng = np.random.default_rng(args.seed)
    n, now_s = args.contacts, now.timestamp()
    span = args.years * 365.25 * DAY
    # signups: density on [0, 1] ∝ 0.5 + x (growth), by the inverse of F(x) = x/2 + x²/2
    u = rng.random(n)
    created = np.sort(now_s - span + (np.sqrt(0.25 + 2 * u) - 0.5) * span)
    created = np.minimum(created, now_s - 60)
    at_signup = rng.random(n) < 0.45
    wait = np.where(at_signup, rng.random(n) * 2 / (24 * 7), rng.exponential(4.0, n))  # weeks
    first = created + wait * WEEK
    lam = rng.gamma(args.r, 1 / args.alpha, n)  # purchases per week while alive
    drop = rng.beta(args.a, args.b, n)  # dropout probability after each purchase
    nu = rng.gamma(args.q, 1 / args.gamma, n)  # spend scale per customer (Gamma-Gamma)

    # purchase k of every contact, k = 0, 1, …: a Poisson process stopped by dropout or now
    idx = np.flatnonzero(first < now_s)
    times = [first[idx]]
    owners = [idx]
    t = first[idx].copy()
    while len(idx):
        t = t + rng.exponential(1.0, len(idx)) / lam[idx] * WEEK
        keep = t < now_s
        idx, t = idx[keep], t[keep]
        times.append(t)
        owners.append(idx)
        alive = rng.random(len(idx)) >= drop[idx]
        idx, t = idx[alive], t[alive]
    counts = np.zeros(n, dtype=np.int64)
    for o in owners:
        counts[o] += 1

    # customers in random order until M orders are placed; the last one's cut short
    order = rng.permutation(n)
    cum = np.cumsum(counts[order])
    if cum[-1] < args.orders:
        log(f"only {cum[-1]:,} orders from {n:,} contacts (wanted {args.orders:,})")
    last = min(int(np.searchsorted(cum, args.orders)), n - 1)
    limit = np.zeros(n, dtype=np.int64)
    limit[order[: last + 1]] = counts[order[: last + 1]]
    limit[order[last]] -= max(int(cum[last]) - args.orders, 0)

    oc = np.concatenate(owners)
    ot = np.concatenate(times)
    ok = np.concatenate([np.full(len(o), k, dtype=np.int64) for k, o in enumerate(owners)])
    keep = ok < limit[oc]
    oc, ot, ok = oc[keep], ot[keep], ok[keep]
    m = len(oc)
    total = np.maximum(np.round(rng.gamma(args.p, 1.0, m) / nu[oc], 2), 0.5)
    u = rng.random(m)
    status = np.where(u < 0.01, 2, np.where(u < 0.03, 1, 0))  # refunded / partly / placed
    refunded = np.where(
        status == 2,
        total,
        np.where(status == 1, np.round(total * rng.uniform(0.1, 0.9, m), 2), 0.0),
    )
    stages = stage_history(created, oc, ot, ok, limit, now_s)
    return {
        "now": now_s,
        "created": created,
        "channel": weighted_choice(rng, CHANNELS, n),
        "zone": weighted_choice(rng, TIMEZONES, n),
        "source": rng.integers(0, len(SOURCES), n),
        "orders_per_contact": limit,
        "oc": oc,
        "ot": ot,
        "ok": ok,
        "total": total,
        "refunded": refunded,
        "status": status,
        **stages,
        "rng": rng,
    }


def stage_history(created, oc, ot, ok, n_orders, now_s: float) -> dict:
    """StageChange rows as arrays, a consistent ledger (each change leaves the stage the
    previous one entered), and each contact's current stage and when it was entered. An
    approximation of the lifecycle rules: loyal by order count only, no engagement."""
    n = len(created)
    srt = np.lexsort((ok, oc))  # by contact, then purchase number
    oc, ot, ok = oc[srt], ot[srt], ok[srt]
    after = np.where(ok == 0, FIRST_TIME, np.where(ok >= 3, LOYAL, REPEAT))
    is_last = ok == n_orders[oc] - 1
    nxt = np.empty_like(ot)
    nxt[:-1] = ot[1:]
    nxt[is_last] = now_s
    gap = nxt - ot
    risk, lapse = gap > 90 * DAY, gap > 180 * DAY
    prev = np.empty(len(oc), dtype=np.int64)
    first = ok == 0
    prev[first] = np.where(created[oc[first]] + 90 * DAY < ot[first], UNENGAGED, SUB)
    later = np.flatnonzero(~first)
    prev[later] = np.where(
        lapse[later - 1], LAPSED, np.where(risk[later - 1], AT_RISK, after[later - 1])
    )
    moved = prev != after
    first_at = np.full(n, np.inf)
    first_at[oc[first]] = ot[first]
    unengaged = np.flatnonzero(np.minimum(first_at, now_s) > created + 90 * DAY)
    lapsed = int(lapse.sum())
    parts = [  # (contact, from, to, at, reason index in REASONS)
        (np.arange(n), np.full(n, NONE), np.full(n, SUB), created, 0),
        (
            unengaged,
            np.full(len(unengaged), SUB),
            np.full(len(unengaged), UNENGAGED),
            created[unengaged] + 90 * DAY,
            1,
        ),
        (oc[moved], prev[moved], after[moved], ot[moved], 2),
        (oc[risk], after[risk], np.full(int(risk.sum()), AT_RISK), ot[risk] + 90 * DAY, 3),
        (oc[lapse], np.full(lapsed, AT_RISK), np.full(lapsed, LAPSED), ot[lapse] + 180 * DAY, 4),
    ]
    by_time = np.argsort(np.concatenate([part[3] for part in parts]), kind="stable")
    sc_contact, sc_from, sc_to, sc_at = (
        np.concatenate([part[i] for part in parts])[by_time] for i in range(4)
    )
    sc_reason = np.concatenate([np.full(len(part[0]), part[4]) for part in parts])[by_time]
    # the current stage: each contact's last change (in time, then ledger order)
    rev = sc_contact[::-1]
    contacts, first_in_rev = np.unique(rev, return_index=True)
    last = len(rev) - 1 - first_in_rev
    stage = np.full(n, SUB)
    stage_at = created.copy()
    stage[contacts] = sc_to[last]
    stage_at[contacts] = sc_at[last]
    return {
        "sc_contact": sc_contact,
        "sc_from": sc_from,
        "sc_to": sc_to,
        "sc_at": sc_at,
        "sc_reason": sc_reason,
        "stage": stage,
        "stage_at": stage_at,
    }


REASONS = [
    "contact created",
    "no order in the 90 days after signup",
    "order placed",
    "no order for 90 days",
    "no order for 180 days",
]


# ------------------------------------------------------------------------------------------
# Loading (COPY, text format, UTC session)
# ------------------------------------------------------------------------------------------
def stamps(seconds: np.ndarray) -> list[str]:
    """Epoch seconds → 'YYYY-MM-DDTHH:MM:SS.ffffff' (the COPY session is in UTC)."""
    micros = np.round(seconds * 1e6).astype(np.int64).astype("datetime64[us]")
    return np.datetime_as_string(micros, unit="us").tolist()


def copy_text(cur, sql: str, n: int, columns: list, chunk: int = 100_000) -> None:
    """COPY … FROM STDIN in text format; a column is a list of strings or one constant
    string. The values are the script's own (no tab, newline or backslash to escape)."""
    with cur.copy(sql) as copy:
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            cols = [[c] * (e - s) if isinstance(c, str) else c[s:e] for c in columns]
            copy.write("".join("\t".join(row) + "\n" for row in zip(*cols, strict=True)))


def load(args, now: datetime) -> dict:
    """Simulate and COPY everything; returns counts, the true parameters and timings."""
    from django.conf import settings

    from campaigns.models import Survey

    t0 = time.perf_counter()
    sim = simulate(args, now)
    rng = sim.pop("rng")
    sim_s = time.perf_counter() - t0
    n, m = args.contacts, len(sim["oc"])
    log(
        f"simulated {n:,} contacts, {m:,} orders, {len(sim['sc_at']):,} stage changes in {sim_s:.1f} s"
    )
    currency = settings.KEEPERS_BASE_CURRENCY
    surveys = {
        "csat": Survey.objects.create(
            name="Order satisfaction", kind="csat", question="How was your order?"
        ).pk,
        "nps": Survey.objects.create(
            name="Recommend us", kind="nps", question="Would you recommend us to a friend?"
        ).pk,
    }
    conn = pg(args.db)
    set_statement_timeout(conn)
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute("SET maintenance_work_mem = '512MB'")
    timings: dict[str, float] = {}
    tables = ["crm_contact", "crm_order", "crm_stagechange", "crm_event", "campaigns_surveyanswer"]
    now_str = stamps(np.array([sim["now"]]))[0]
    with conn.cursor() as cur:
        saved = {t: drop_secondary(cur, t) for t in tables}
        conn.commit()

        t1 = time.perf_counter()
        zone_names = [z for z, _w in TIMEZONES]
        zones = [zone_names[i] for i in sim["zone"].tolist()]
        locale_of = {
            z: next((v for k, v in LOCALES.items() if z.startswith(k)), "en-US") for z in zone_names
        }
        idx = range(n)
        copy_text(
            cur,
            "COPY crm_contact (email, first_name, last_name, phone, locale, timezone,"
            " attributes, source, channel, stage, stage_changed_at, created_at, updated_at)"
            " FROM STDIN",
            n,
            [
                [f"bench-{i}@example.com" for i in idx],
                [FIRST_NAMES[i % len(FIRST_NAMES)] for i in idx],
                [LAST_NAMES[i % len(LAST_NAMES)] for i in idx],
                "",
                [locale_of[z] for z in zones],
                zones,
                "{}",
                [SOURCES[i] for i in sim["source"].tolist()],
                [CHANNELS[i][0] for i in sim["channel"].tolist()],
                [STAGES[i] for i in sim["stage"].tolist()],
                stamps(sim["stage_at"]),
                stamps(sim["created"]),
                now_str,
            ],
        )
        cur.execute("SELECT min(id), max(id), count(*) FROM crm_contact")
        lo, hi, count = cur.fetchone()
        assert count == n and hi - lo + 1 == n, "contact ids are not one sequence"
        ids = np.arange(lo, hi + 1, dtype=np.int64)  # in created order (COPY keeps it)
        timings["contacts"] = time.perf_counter() - t1

        t1 = time.perf_counter()
        placed = np.argsort(sim["ot"], kind="stable")  # stored in the order they were placed
        oc, ot = sim["oc"][placed], sim["ot"][placed]
        total, refunded = sim["total"][placed], sim["refunded"][placed]
        status = sim["status"][placed]
        status_names = ["placed", "partially_refunded", "refunded"]
        when = stamps(ot)
        copy_text(
            cur,
            "COPY crm_order (external_id, contact_id, total, currency, refunded_total, status,"
            " ordered_at, source, attributes, created_at) FROM STDIN",
            m,
            [
                [f"bench-o-{i}" for i in range(m)],
                [str(i) for i in ids[oc].tolist()],
                [f"{v:.2f}" for v in total.tolist()],
                currency,
                [f"{v:.2f}" for v in refunded.tolist()],
                [status_names[s] for s in status.tolist()],
                when,
                "bench",
                "{}",
                when,
            ],
        )
        timings["orders"] = time.perf_counter() - t1

        t1 = time.perf_counter()
        k = len(sim["sc_at"])
        if args.stage_changes:
            copy_text(
                cur,
                "COPY crm_stagechange (contact_id, from_stage, to_stage, at, reason) FROM STDIN",
                k,
                [
                    [str(i) for i in ids[sim["sc_contact"]].tolist()],
                    [STAGES[i] for i in sim["sc_from"].tolist()],
                    [STAGES[i] for i in sim["sc_to"].tolist()],
                    stamps(sim["sc_at"]),
                    [REASONS[i] for i in sim["sc_reason"].tolist()],
                ],
            )
        timings["stage_changes"] = time.perf_counter() - t1

        t1 = time.perf_counter()
        views = args.page_views
        known = rng.random(views) < 0.7
        who = rng.integers(0, n, views)
        seen = sim["created"][who] + rng.random(views) * (sim["now"] - sim["created"][who])
        anonymous = rng.integers(0, max(views // 6, 1), views)
        vt = stamps(seen)
        copy_text(
            cur,
            COPY_EVENTS,
            views,
            [
                [
                    str(ids[w]) if kn else "\\N"
                    for w, kn in zip(who.tolist(), known.tolist(), strict=True)
                ],
                [
                    "" if kn else f"anon-{a}"
                    for a, kn in zip(anonymous.tolist(), known.tolist(), strict=True)
                ],
                "Page Viewed",
                [f'{{"path": "/p/{w % 500}"}}' for w in who.tolist()],
                "{}",
                vt,
                vt,
                "bench",
                [f"pv-{i}" for i in range(views)],
            ],
        )
        timings["page_views"] = time.perf_counter() - t1

        # survey answers: after a random order, CSAT and NPS alternately
        answers = min(args.survey_answers, m)
        picked = rng.choice(m, size=answers, replace=False)
        at = np.minimum(sim["ot"][picked] + rng.uniform(1, 5, answers) * DAY, sim["now"] - 3600)
        kinds = np.arange(answers) % 2  # 0 CSAT, 1 NPS
        csat = rng.choice(CSAT_SCORES[0], size=answers, p=CSAT_SCORES[1])
        nps = rng.choice(NPS_SCORES[0], size=answers, p=NPS_SCORES[1])
        scores = np.where(kinds == 0, csat, nps)

        def category(kind: int, score: int) -> str:
            if kind == 0:
                return "satisfied" if score >= 4 else ("neutral" if score == 3 else "unsatisfied")
            return "promoter" if score >= 9 else ("passive" if score >= 7 else "detractor")

        answered = stamps(at)
        copy_text(
            cur,
            "COPY campaigns_surveyanswer (survey_id, contact_id, ref, score, comment, category,"
            " answered_at, updated_at) FROM STDIN",
            answers,
            [
                [str(surveys["nps" if kd else "csat"]) for kd in kinds.tolist()],
                [str(i) for i in ids[sim["oc"][picked]].tolist()],
                [f"bench-{i}" for i in range(answers)],
                [str(s) for s in scores.tolist()],
                "",
                [category(kd, s) for kd, s in zip(kinds.tolist(), scores.tolist(), strict=True)],
                answered,
                answered,
            ],
        )

        # marketing spend: per paid channel and month, new customers × CAC × noise
        first = sim["ok"] == 0
        months = sim["ot"][first].astype(np.int64).astype("datetime64[s]").astype("datetime64[M]")
        chan = sim["channel"][sim["oc"][first]]
        start_month = np.datetime64(
            datetime.fromtimestamp(sim["now"] - args.years * 365.25 * DAY, UTC).date(), "M"
        )
        this_month = np.datetime64(now.date(), "M")
        spend_rows = []
        for c, (name, _w) in enumerate(CHANNELS):
            if name not in CAC:
                continue
            mine = months[chan == c]
            month = start_month
            while month <= this_month:
                new = int((mine == month).sum())
                amount = max(new * CAC[name] * rng.uniform(0.8, 1.2), 200.0)
                spend_rows.append((name, f"{month}-01", f"{amount:.2f}"))
                month += 1
        copy_text(
            cur,
            "COPY crm_marketingspend (channel, month, amount, currency, note, created_at)"
            " FROM STDIN",
            len(spend_rows),
            [
                [r[0] for r in spend_rows],
                [r[1] for r in spend_rows],
                [r[2] for r in spend_rows],
                currency,
                "bench",
                now_str,
            ],
        )
        conn.commit()

        t1 = time.perf_counter()
        for t in tables:
            restore_secondary(cur, t, saved[t])
        conn.commit()
        timings["indexes"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    timings["vacuum_analyze"] = time.perf_counter() - t1
    sizes = dict(
        conn.execute(
            "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class"
            " WHERE relname = ANY(%s)",
            [["crm_contact", "crm_order", "crm_stagechange", "crm_event"]],
        ).fetchall()
    )
    conn.close()
    seconds = time.perf_counter() - t0
    customers = int((sim["orders_per_contact"] > 0).sum())
    repeaters = int((sim["orders_per_contact"] > 1).sum())
    log(f"loaded in {seconds:.1f} s {timings}")
    return {
        "seconds": seconds,
        "simulate_seconds": sim_s,
        "timings": timings,
        "contacts": n,
        "customers": customers,
        "repeat_customers": repeaters,
        "orders": m,
        "orders_max_per_customer": int(sim["orders_per_contact"].max()),
        "refunded": int((sim["status"] == 2).sum()),
        "partly_refunded": int((sim["status"] == 1).sum()),
        "stage_changes": len(sim["sc_at"]) if args.stage_changes else 0,
        "stages": {STAGES[s]: int((sim["stage"] == s).sum()) for s in range(1, len(STAGES))},
        "page_views": views,
        "survey_answers": answers,
        "spend_rows": len(spend_rows),
        "first_order": stamps(np.array([sim["ot"].min()]))[0][:10],
        "sizes": sizes,
        "currency": currency,
    }


# ------------------------------------------------------------------------------------------
# Measurement
# ------------------------------------------------------------------------------------------
def postmaster_children_cpu(backend_pid: int | None) -> float:
    """CPU of the postmaster's ended children (cutime + cstime): PostgreSQL's parallel
    workers, once they exit (and any other backend that ends meanwhile)."""
    if not backend_pid:
        return 0.0
    try:
        fields = proc_stat(int(proc_stat(backend_pid)[1]))
    except OSError:
        return 0.0
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


class Statements:
    """Every SQL statement this process runs while active (connection.execute_wrapper):
    its text, parameters and execution time (up to the result being received, before rows
    are turned into Python objects)."""

    def __init__(self):
        self.rows: list[dict] = []

    def __call__(self, execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.rows.append({"sql": sql, "params": params, "seconds": time.perf_counter() - t0})

    def __enter__(self):
        from django.db import connection

        self._cm = connection.execute_wrapper(self)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def measure(fn) -> tuple[object, dict]:
    """fn() in this process, timed, with the CPU of this process, its PostgreSQL backend,
    PostgreSQL's parallel workers and the whole machine, and its statements."""
    pid = backend_pid()
    w0 = postmaster_children_cpu(pid)
    # parallel workers run inside the call: the machine's CPU counts them
    with Meter() as m, Statements() as statements:
        out = fn()
    time.sleep(0.2)  # let the postmaster reap the parallel workers
    workers = postmaster_children_cpu(pid) - w0
    return out, {
        **m.figures(),
        "pg_workers_cpu": workers,
        "statements": [{"sql": _short(s["sql"]), "seconds": s["seconds"]} for s in statements.rows],
        "_statements": statements.rows,
    }


def _short(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 90 else text[:87] + "…"


def cores(run: dict) -> str:
    """harness.cores (PostgreSQL's parallel workers included); "–" for a call under 0.2 s:
    /proc counts in 10 ms ticks, too coarse for shorter calls."""
    return harness.cores(run, min_seconds=0.2)


def clear_cache() -> None:
    from django.core.cache import cache

    cache.clear()


def timed_calls(name: str, fn, repeat: int, quiet_wait: float, warm: bool = True) -> dict:
    """`repeat` cold calls (cache cleared before each) and one warm call (served from the
    cache, when `warm`)."""
    runs = []
    for i in range(repeat):
        quiet = wait_for_quiet(quiet_wait)
        clear_cache()
        out, run = measure(fn)
        run["quiet_before"] = quiet
        runs.append(run)
        log(
            f"{name} cold #{i + 1}: {run['seconds']:.2f} s (cores py/pg/workers/other"
            f" {cores(run)}; other work before it {quiet['busy']:.2f} cores)"
        )
    result = {"cold": runs, "result": out}
    if warm:
        _out, run = measure(fn)
        result["warm"] = run
        log(f"{name} warm: {run['seconds'] * 1000:.1f} ms")
    return result


def explain(statements: list[dict], pick) -> dict | None:
    """EXPLAIN (ANALYZE, BUFFERS) of the first captured statement `pick` accepts, with the
    planner settings the code set just before it (set_config(…, true): SET LOCAL, in a
    transaction)."""
    from django.db import connection, transaction

    for i, st in enumerate(statements):
        if not pick(st["sql"]):
            continue
        settings = []
        for before in reversed(statements[:i]):
            if "set_config(" not in before["sql"]:
                break
            settings.insert(0, list(before["params"])[:2])
        with transaction.atomic(), connection.cursor() as cursor:
            for name, value in settings:
                cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + st["sql"], st["params"])
            plan = "\n".join(row[0] for row in cursor.fetchall())
        return {"sql": st["sql"].strip(), "settings": dict(settings), "plan": plan}
    return None


class FitSplit:
    """Timing wrappers around crm.clv's steps and clv_fit's read/store steps, on the module
    attributes clv_fit looks up at call time; removed on exit (the app is not changed)."""

    CLV = ("transactions_from_orders", "rfm_summary", "fit_bgnbd", "fit_gamma_gamma")
    SERVICE = ("_fit", "_store", "_upsert", "_refresh_segments")

    def __enter__(self):
        from crm import clv
        from crm.services import clv_fits

        self.times: dict[str, dict] = {}
        self.saved = []
        pid = backend_pid()
        for module, names in ((clv, self.CLV), (clv_fits, self.SERVICE)):
            for name in names:
                original = getattr(module, name)
                self.saved.append((module, name, original))
                setattr(module, name, self._wrap(name, original, pid))
        self.minimize = _MinimizeSpy().__enter__()
        return self

    def _wrap(self, name, fn, pid):
        def wrapper(*args, **kwargs):
            p0, c0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                rec = self.times.setdefault(
                    name, {"seconds": 0.0, "python_cpu": 0.0, "pg_cpu": 0.0, "calls": 0}
                )
                rec["seconds"] += time.perf_counter() - t0
                rec["python_cpu"] += time.process_time() - c0
                rec["pg_cpu"] += cpu_seconds(pid) - p0
                rec["calls"] += 1

        return wrapper

    def __exit__(self, *exc):
        for module, name, original in self.saved:
            setattr(module, name, original)
        self.minimize.__exit__()
        return False


class _MinimizeSpy:
    """Records scipy's minimize results (iterations, evaluations) as crm.clv calls it."""

    def __enter__(self):
        from crm import clv

        self.original = clv.minimize
        self.results: list[dict] = []

        def spy(*args, **kwargs):
            res = self.original(*args, **kwargs)
            self.results.append({"nit": int(res.nit), "nfev": int(res.nfev)})
            return res

        clv.minimize = spy
        return self

    def __exit__(self, *exc):
        from crm import clv

        clv.minimize = self.original
        return False


def fit_runs(as_of: date, repeat: int, quiet_wait: float) -> dict:
    """clv_fit end to end, `repeat` times, each split by FitSplit."""
    from crm.models import ContactClv
    from crm.services.clv_fits import clv_fit

    runs = []
    for i in range(repeat):
        quiet = wait_for_quiet(quiet_wait)
        existing = ContactClv.objects.count()
        with FitSplit() as split:
            fit, run = measure(lambda: clv_fit(as_of=as_of))
        run.update(
            quiet_before=quiet,
            existing_rows=existing,
            split=split.times,
            optimiser=split.minimize.results,
            status=fit.status,
            error=fit.error,
            duration_ms=fit.duration_ms,
        )
        runs.append(run)
        log(
            f"clv_fit #{i + 1} ({'insert' if not existing else 'update'}): {run['seconds']:.1f} s,"
            f" status {fit.status} {fit.error[:80]}; split "
            + ", ".join(f"{k} {v['seconds']:.1f}s" for k, v in split.times.items())
        )
    f = fit
    params = {
        "customers": f.customers,
        "r": f.r,
        "alpha": f.alpha,
        "a": f.a,
        "b": f.b,
        "bgnbd_log_likelihood": f.bgnbd_log_likelihood,
        "p": f.p,
        "q": f.q,
        "gamma": f.gamma,
        "gg_log_likelihood": f.gg_log_likelihood,
        "gg_customers": f.gg_customers,
        "status": f.status,
        "error": f.error,
    }
    rows = ContactClv.objects.filter(fit=f).count()
    return {"runs": runs, "params": params, "rows": rows}


def fit_pieces(as_of: date, quiet_wait: float) -> dict:
    """The crm.clv functions clv_fit runs, called one by one, each measured."""
    from crm import clv
    from crm.services.clv_fits import PURCHASE_HORIZONS, UNIT_DAYS, _orders

    wait_for_quiet(quiet_wait)
    pieces: dict[str, dict] = {}
    tx, pieces["transactions_from_orders"] = measure(
        lambda: clv.transactions_from_orders(_orders(), as_of)
    )
    summary, pieces["rfm_summary"] = measure(
        lambda: clv.rfm_summary(tx, as_of, unit_days=UNIT_DAYS)
    )
    x, t_x, T, zbar = summary.x, summary.t_x, summary.T, summary.zbar
    distinct = len(np.unique(np.column_stack([x, t_x, T]), axis=0))
    with _MinimizeSpy() as spy:
        bg, pieces["fit_bgnbd"] = measure(lambda: clv.fit_bgnbd(x, t_x, T))
        gg, pieces["fit_gamma_gamma"] = measure(lambda: clv.fit_gamma_gamma(x, zbar))
    pieces["fit_bgnbd"]["optimiser"] = spy.results[0]
    pieces["fit_gamma_gamma"]["optimiser"] = spy.results[1]
    horizons = np.array(list(PURCHASE_HORIZONS.values()), dtype=np.float64) / UNIT_DAYS
    _v, pieces["probability_alive"] = measure(lambda: clv.probability_alive(bg, x, t_x, T))
    _v, pieces["expected_purchases (30/90/365 d)"] = measure(
        lambda: clv.expected_purchases(bg, horizons[:, None], x, t_x, T)
    )
    _v, pieces["expected_spend"] = measure(lambda: clv.expected_spend(gg, x, zbar))
    _v, pieces["predicted_clv (12 months)"] = measure(
        lambda: clv.predicted_clv(bg, gg, x, t_x, T, zbar, months=12, unit_days=UNIT_DAYS)
    )
    explain_tx = explain(
        pieces["transactions_from_orders"]["_statements"], lambda sql: "crm_order" in sql
    )
    for piece in pieces.values():
        piece.pop("_statements", None)
    return {
        "pieces": pieces,
        "transactions": len(tx),
        "customers": len(summary),
        "repeaters": int((x > 0).sum()),
        "distinct_bgnbd_rows": distinct,
        "explain_transactions": explain_tx,
    }


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
def fmt_s(x: float | None) -> str:
    if x is None:
        return "–"
    if x < 0.01:
        return f"{x * 1000:.2f} ms"
    if x < 1:
        return f"{x * 1000:.0f} ms"
    return f"{x:,.2f} s"


def cold_stats(block: dict | None) -> tuple[float | None, float | None, float | None]:
    """(first, median, slowest) of the cold calls."""
    if not block or not block.get("cold"):
        return None, None, None
    s = [r["seconds"] for r in block["cold"]]
    return s[0], statistics.median(s), max(s)


def build_report(args, info: dict, res: dict, total_s: float) -> tuple[str, str]:
    get = res.get
    ld = get("load") or {}
    rows = []
    for key, label, target in (
        ("summary", f"`metrics_summary({get('start')}, {get('end')})`", TARGETS["summary"]),
        ("cohorts", "`cohorts(24)`", TARGETS["cohorts"]),
        ("fit", f"`clv_fit(as_of={get('as_of')})`", TARGETS["fit"]),
        ("funnel", f"`funnel({get('start')}, {get('end')})`", None),
    ):
        block = get(key)
        if key == "fit":
            block = {"cold": (get("fit") or {}).get("runs", [])}
        first, med, worst = cold_stats(block)
        warm = (block or {}).get("warm")
        ok = None if target is None or worst is None else worst < target
        runs = (block or {}).get("cold") or []
        slowest = max(runs, key=lambda r: r["seconds"]) if runs else None
        rows.append(
            [
                label,
                "–" if target is None else f"< {target:g} s",
                fmt_s(first),
                fmt_s(med) + (f" ({len(runs)})" if runs else ""),
                fmt_s(worst),
                fmt_s(warm["seconds"]) if warm else ("–" if key != "fit" else "no cache"),
                cores(slowest) if slowest else "–",
                verdict(ok) if target is not None else "(no target)",
            ]
        )
    header = [
        "call",
        "target",
        "cold, first",
        "cold, median (runs)",
        "cold, slowest",
        "warm (cached)",
        "cores of the slowest: py / PG backend / PG workers / other",
        "verdict",
    ]
    console = table(rows, header)
    cmd = " ".join([".venv/bin/python", "bench/metrics.py", *res.get("argv", [])])
    code = get("git_start") or {}
    lines = [
        "# Metrics benchmark",
        "",
        f"Run {get('finished_at', datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))} with"
        f" `{cmd}` ({total_s / 60:.1f} min in all, load {ld.get('seconds', 0):.0f} s).",
        "",
    ]
    if code.get("commit"):
        dirty = code.get("uncommitted") or []
        lines += [
            f"Code at the start: commit {code['commit']} ({code.get('subject', '')}), "
            + (
                "uncommitted changes to " + ", ".join(dirty)
                if dirty
                else "no uncommitted changes to the code under test"
            )
            + ".",
            "",
        ]
    end_code = get("git") or {}
    if end_code.get("commits_since"):
        lines += [
            f"Others committed during the run ({end_code['commits_since']} commits); of the"
            " code under test they changed "
            + (", ".join(end_code.get("changed_since") or []) or "nothing")
            + ". Each module was imported at its first use, early in the run.",
            "",
        ]
    if get("partial"):
        lines += [f"**Partial report: {res['partial']}.**", ""]
    q = get("quiet") or {}
    pgs = info.get("pg_settings", {}) | (get("pg_more") or {})
    lines += [
        "## Machine",
        "",
        *machine_lines(info, pgs),
        f"- Python {info['python']}, Django {info['django']}, numpy {get('numpy', '?')},"
        f" scipy {get('scipy', '?')}; settings `config.settings.test`, Django's cache"
        " the default local-memory cache, DEBUG off",
    ]
    if q:
        lines.append(
            quiet_line(q)
            + (
                f"; other benchmarks running: {', '.join(get('other_benchmarks'))}"
                if get("other_benchmarks")
                else "; no other benchmark running"
            )
        )
    t = ld.get("timings", {})
    true = get("true_params") or {}
    lines += [
        "",
        "## Setup",
        "",
        f"- Database `{args.db}`, recreated and migrated; loaded with COPY in"
        f" {ld.get('seconds', 0):.0f} s (simulation {ld.get('simulate_seconds', 0):.0f} s"
        + "".join(f", {k.replace('_', ' ')} {v:.0f} s" for k, v in t.items())
        + "), secondary indexes and foreign keys dropped for the load and rebuilt, then"
        " VACUUM ANALYZE. Sizes with indexes: "
        + ", ".join(f"{k} {v}" for k, v in sorted((ld.get("sizes") or {}).items()))
        + ".",
        f"- {ld.get('contacts', 0):,} contacts created over {args.years:g} years (the later"
        " the more: the density grows linearly from 0.5 to 1.5), channels "
        + ", ".join(f"{c} {w}%" for c, w in CHANNELS)
        + f", time zones from a weighted list of {len(TIMEZONES)} IANA zones, locales by zone.",
        f"- {ld.get('orders', 0):,} orders ({ld.get('currency', '')}, the base currency) from"
        f" {ld.get('customers', 0):,} customers ({ld.get('repeat_customers', 0):,} with a"
        f" repeat order; at most {ld.get('orders_max_per_customer', 0)} orders for one"
        f" customer), first on {ld.get('first_order', '?')}, simulated from the BG/NBD and"
        f" Gamma-Gamma models: λ ~ Gamma(r={true.get('r')}, α={true.get('alpha')}) purchases"
        f" per week, dropout after each purchase p ~ Beta(a={true.get('a')},"
        f" b={true.get('b')}), spend per order ~ Gamma(p={true.get('p')}, ν),"
        f" ν ~ Gamma(q={true.get('q')}, γ={true.get('gamma')}) per customer (mean"
        f" ≈ {true.get('p', 0) * true.get('gamma', 0) / max(true.get('q', 2) - 1, 1e-9):.0f});"
        " a contact's first order at signup (45%) or after an exponential wait (mean 4"
        " weeks); contacts turned into customers in random order until the orders were"
        " placed, the rest never ordered. Stored in the order they were placed.",
        f"- Refunds: {ld.get('refunded', 0):,} orders fully refunded,"
        f" {ld.get('partly_refunded', 0):,} partly (10–90%) — 3%.",
        f"- {ld.get('stage_changes', 0):,} StageChange rows: a consistent ledger (created →"
        " subscriber; unengaged 90 days after signup without an order; first_time / repeat"
        " / loyal at the 1st / 2nd / 4th order; at_risk 90 and lapsed 180 days after an"
        " order with none after it); stages now: "
        + ", ".join(f"{k} {v:,}" for k, v in (ld.get("stages") or {}).items())
        + ".",
        f"- {ld.get('spend_rows', 0):,} marketing spend rows (paid_search, social, email,"
        " referral per month: new customers × a CAC of "
        + ", ".join(f"${v:g}" for v in CAC.values())
        + " × 0.8–1.2); "
        f"{ld.get('page_views', 0):,} `Page Viewed` events (70% of contacts, 30% anonymous);"
        f" {ld.get('survey_answers', 0):,} survey answers (CSAT and NPS alternately, a few"
        " days after a random order).",
        f"- The period: {get('start')} – {get('end')} (the last full calendar year); the fit"
        f" as of {get('as_of')} (today, UTC).",
        "- Cold = Django's cache cleared before the call (`cache.clear()`), so every figure"
        " is computed; PostgreSQL's buffers and the OS page cache are left as they are (the"
        " data were just loaded and read, so they are in memory: 23 GB of RAM). Warm = the"
        " same call again, served from Django's cache. Verdict on the slowest cold call.",
        "- “cores” is CPU seconds per wall second, out of"
        f" {info['nproc']}: this Python process / its PostgreSQL backend / PostgreSQL's"
        " parallel workers (the postmaster's ended children: also any other backend that"
        " ended meanwhile) / everything else on the machine.",
        "",
        "## Results",
        "",
        console,
        "",
    ]
    sf, cf = get("summary_figures"), get("cohort_figures")
    if sf:
        cu = sf["customers"]
        lines += [
            f"What the summary found (a sanity check): S {cu['start']:,}, E {cu['end']:,},"
            f" N {cu['new']:,}, {cu['to_date']:,} customers to date ({cu['repeat']:,} repeat);"
            f" CRR {sf['retention_rate']}%, churn {sf['churn_rate']}%, NRR {sf['nrr']}%, net"
            f" revenue {sf['net_revenue']}, CAC {sf['cac']}, CSAT {sf['csat']}, NPS {sf['nps']}."
            + (
                f" The cohort table: {cf['cohorts']} cohorts from {cf['first']},"
                f" {cf['customers']:,} customers."
                if cf
                else ""
            ),
            "",
        ]
    # per-statement times of the slowest cold call of each
    for key, label in (
        ("summary", "metrics_summary"),
        ("cohorts", "cohorts"),
        ("funnel", "funnel"),
    ):
        block = get(key)
        if not block or not block.get("cold"):
            continue
        slowest = max(block["cold"], key=lambda r: r["seconds"])
        st = slowest.get("statements") or []
        in_sql = sum(s["seconds"] for s in st)
        lines += [
            f"`{label}`, slowest cold call: {fmt_s(slowest['seconds'])}, of which"
            f" {fmt_s(in_sql)} waiting on its {len(st)} SQL statements (execution and transfer"
            " of the result), the rest in Python. The longest:",
            "",
            table(
                [
                    [fmt_s(s["seconds"]), f"`{s['sql']}`"]
                    for s in sorted(st, key=lambda s: -s["seconds"])[:4]
                ],
                ["seconds", "statement"],
            ),
            "",
        ]
    fit = get("fit")
    if fit:
        lines += ["## The CLV fit", ""]
        frows = []
        for i, run in enumerate(fit["runs"], 1):
            sp = run.get("split", {})

            def sec(name: str, sp=sp) -> float:
                return sp.get(name, {}).get("seconds", 0.0)

            reading = sec("transactions_from_orders")
            fitting = sec("rfm_summary") + sec("fit_bgnbd") + sec("fit_gamma_gamma")
            predicting = sec("_fit") - reading - fitting
            upserts = sec("_upsert")
            store_rest = sec("_store") - upserts
            other = run["seconds"] - sec("_fit") - sec("_store") - sec("_refresh_segments")
            frows.append(
                [
                    f"{i}: {'insert' if not run['existing_rows'] else 'update'}"
                    f" {fit['rows']:,} rows",
                    fmt_s(run["seconds"]),
                    fmt_s(reading),
                    fmt_s(sec("rfm_summary")),
                    fmt_s(sec("fit_bgnbd")),
                    fmt_s(sec("fit_gamma_gamma")),
                    fmt_s(predicting),
                    f"{fmt_s(upserts)} ({sp.get('_upsert', {}).get('calls', 0)} × INSERT … ON CONFLICT)",
                    fmt_s(store_rest),
                    fmt_s(other + sec("_refresh_segments")),
                    cores(run),
                    verdict(run["seconds"] < TARGETS["fit"]),
                ]
            )
        lines += [
            "`clv_fit` end to end, split by timing wrappers around its steps (see `FitSplit`):",
            "",
            table(
                frows,
                [
                    "run",
                    "total",
                    "read orders (`transactions_from_orders`)",
                    "`rfm_summary`",
                    "`fit_bgnbd`",
                    "`fit_gamma_gamma`",
                    "predictions",
                    "upserts of ContactClv",
                    "rest of the store (save, DELETE of others)",
                    "rest",
                    "cores: py / PG / workers / other",
                    "< 60 s",
                ],
            ),
            "",
        ]
        for i, run in enumerate(fit["runs"], 1):
            opt = run.get("optimiser") or []
            if opt:
                lines.append(
                    f"- Run {i}: the optimiser took "
                    + ", ".join(
                        f"{name} {o['nit']} iterations / {o['nfev']} evaluations"
                        for name, o in zip(("BG/NBD", "Gamma-Gamma"), opt, strict=False)
                    )
                    + f"; stored duration {run.get('duration_ms', 0):,} ms, status"
                    f" {run.get('status')}"
                    + (f" ({run['error']})" if run.get("error") else "")
                    + "."
                )
        prm = fit["params"]
        lines += [
            "",
            "Fitted parameters (weeks) against those the data were drawn from:",
            "",
            table(
                [
                    [name, _g(prm.get(name)), _g(true.get(name))]
                    for name in ("r", "alpha", "a", "b", "p", "q", "gamma")
                ]
                + [
                    ["BG/NBD log-likelihood", _g(prm.get("bgnbd_log_likelihood")), ""],
                    ["Gamma-Gamma log-likelihood", _g(prm.get("gg_log_likelihood")), ""],
                    [
                        "customers (BG/NBD / Gamma-Gamma)",
                        f"{prm.get('customers') or 0:,} / {prm.get('gg_customers') or 0:,}",
                        "",
                    ],
                ],
                ["parameter", "fitted", "true (simulation)"],
            ),
            "",
            "Orders read by the fit: the base currency, fully refunded orders left out, net of"
            " partial refunds, merged per customer and UTC day; the Gamma-Gamma fit uses the"
            " mean of the repeat orders. So the fitted values need not equal the true ones"
            " exactly (the simulation is in continuous time; same-day orders merge).",
            "",
        ]
    pcs = get("pieces")
    if pcs:
        prow = []
        for name, piece in pcs["pieces"].items():
            note = ""
            if piece.get("optimiser"):
                note = f"{piece['optimiser']['nit']} iterations, {piece['optimiser']['nfev']} evaluations"
            if name == "fit_bgnbd":
                note += (
                    f"; {pcs['distinct_bgnbd_rows']:,} distinct (x, t_x, T) of {pcs['customers']:,}"
                )
            if name == "fit_gamma_gamma":
                note += f"; {pcs['repeaters']:,} customers with a repeat purchase"
            if name == "transactions_from_orders":
                in_sql = sum(s["seconds"] for s in piece.get("statements", []))
                note = (
                    f"{pcs['transactions']:,} (customer, day) rows; {fmt_s(in_sql)} waiting on"
                    " the query, the rest building the rows in Python"
                )
            prow.append([f"`{name}`", fmt_s(piece["seconds"]), cores(piece), note])
        lines += [
            "The same steps called one by one (crm.clv's functions on the same data):",
            "",
            table(prow, ["step", "seconds", "cores: py / PG / workers / other", "note"]),
            "",
        ]
    if get("analysis"):
        lines += ["## Analysis", "", res["analysis"], ""]
    for key, title in (
        ("explain_summary", "The summary's main query (`_customer_rows`)"),
        ("explain_cohorts", "The cohort query (`_cohorts`)"),
        ("explain_transactions", "The fit's order read (`transactions_from_orders`)"),
    ):
        ex = get(key) if key != "explain_transactions" else (pcs or {}).get(key)
        if not ex:
            continue
        lines += [
            f"## EXPLAIN (ANALYZE, BUFFERS): {title}"
            + "".join(f", {k} {v}" for k, v in (ex.get("settings") or {}).items())
            + (f", work_mem {ex['work_mem']}" if ex.get("work_mem") else ""),
            "",
            "```sql",
            _dedent(ex["sql"]),
            "```",
            "",
            "```",
            ex["plan"],
            "```",
            "",
        ]
    lines += ["## Command", "", "```", cmd, "```", ""]
    if get("rebuilt_with"):
        lines += [
            "The report was rebuilt from the run's JSON dump (to add the Analysis) with"
            f" `.venv/bin/python bench/metrics.py {' '.join(res['rebuilt_with'])}`.",
            "",
        ]
    return console, "\n".join(lines)


def _g(x) -> str:
    return "–" if x is None else f"{x:.4g}"


def _dedent(sql: str) -> str:
    import textwrap

    return textwrap.dedent("\n" + sql.strip("\n")).strip()


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contacts", type=int, default=1_000_000)
    p.add_argument("--orders", type=int, default=3_000_000)
    p.add_argument("--years", type=float, default=3.0, help="contacts created over this span")
    p.add_argument("--page-views", type=int, default=500_000)
    p.add_argument("--survey-answers", type=int, default=5_000)
    p.add_argument(
        "--no-stage-changes", dest="stage_changes", action="store_false", help="skip the history"
    )
    # the world the orders are drawn from (weeks; BG/NBD r, α, a, b; Gamma-Gamma p, q, γ)
    p.add_argument("--r", type=float, default=0.75)
    p.add_argument("--alpha", type=float, default=8.0)
    p.add_argument("--a", type=float, default=0.7)
    p.add_argument("--b", type=float, default=3.0)
    p.add_argument("--p", type=float, default=6.0)
    p.add_argument("--q", type=float, default=3.5)
    p.add_argument("--gamma", type=float, default=25.0)
    p.add_argument("--repeat", type=int, default=3, help="cold calls of each metric")
    p.add_argument("--fit-repeat", type=int, default=2, help="clv_fit runs end to end")
    add_common_flags(
        p,
        db="keepers_bench_metrics",
        out=str(ROOT / "bench" / "results-metrics.md"),
        waits_for_benchmarks=True,
        each="call",
    )
    args = p.parse_args()
    if args.report_from:
        report_rebuild(
            args,
            lambda saved: build_report(
                args,
                saved["info"],
                {**saved, "rebuilt_with": sys.argv[1:]},
                saved.get("total_s", 0),
            ),
        )
        return

    began = time.perf_counter()
    info = machine()
    log(f"{info['nproc']} cores, {info['ram_gb']} GB, PostgreSQL {info['pg']}")
    setup_fresh(args.db, statement_timeout=args.statement_timeout)
    import scipy
    from django.db import connection

    from crm import clock
    from crm.services.metrics import cohorts, funnel, metrics_summary

    now = clock.now()
    res: dict = {
        "true_params": {k: getattr(args, k) for k in ("r", "alpha", "a", "b", "p", "q", "gamma")},
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "git_start": git_state(UNDER_TEST),
    }
    with connection.cursor() as cursor:
        res["pg_more"] = {}
        for name in ("work_mem", "max_parallel_workers_per_gather", "jit"):
            cursor.execute(f"SHOW {name}")
            res["pg_more"][name] = cursor.fetchone()[0]
    res["load"] = load(args, now)
    res["other_benchmarks"] = wait_for_benchmarks(args.quiet_wait)
    res["quiet"] = wait_for_quiet(args.quiet_wait)
    log(f"machine before measuring: {res['quiet']}")

    year = now.date().year - 1
    start, end = date(year, 1, 1), date(year, 12, 31)
    as_of = now.astimezone(UTC).date()
    res.update(start=str(start), end=str(end), as_of=str(as_of))

    def save(partial: str | None = None) -> None:
        """Write what is measured so far: a run stopped from outside leaves a report."""
        report_save(
            args,
            res,
            info=info,
            began=began,
            build=build_report,
            partial=partial,
            missing="measurements",
        )

    def strip(block: dict) -> dict:
        """Keep the captured statements of the slowest cold call for EXPLAIN; drop the
        results' bulk and the raw statements from what is saved."""
        block.pop("result", None)
        for run in block.get("cold", []) + ([block["warm"]] if block.get("warm") else []):
            run.pop("_statements", None)
        return block

    qw = args.phase_quiet_wait
    summary = timed_calls("summary", lambda: metrics_summary(start, end), args.repeat, qw)
    res["summary_figures"] = _summary_figures(summary["result"])
    res["explain_summary"] = explain(
        summary["cold"][-1]["_statements"], lambda sql: "WITH per AS" in sql
    )
    res["summary"] = strip(summary)
    save("summary")

    cohort = timed_calls("cohorts", lambda: cohorts(24), args.repeat, qw)
    c = cohort["result"]["cohorts"]
    res["cohort_figures"] = {
        "cohorts": len(c),
        "first": str(c[0]["cohort"]) if c else None,
        "customers": sum(x["customers"] for x in c),
    }
    res["explain_cohorts"] = explain(
        cohort["cold"][-1]["_statements"], lambda sql: "WITH months AS" in sql
    )
    res["cohorts"] = strip(cohort)
    save("cohorts")

    fit = fit_runs(as_of, args.fit_repeat, qw)
    for run in fit["runs"]:
        run.pop("_statements", None)
    res["fit"] = fit
    save("clv_fit")
    res["pieces"] = fit_pieces(as_of, qw)
    save("clv pieces")

    fun = timed_calls("funnel", lambda: funnel(start, end), args.repeat, qw)
    res["funnel"] = strip(fun)

    if analysis := read_analysis(args):
        res["analysis"] = analysis
    res["git"] = git_state(UNDER_TEST, since=res["git_start"].get("commit"))
    save()


def _summary_figures(summary: dict) -> dict:
    return {
        "customers": summary["customers"],
        "retention_rate": summary["retention_rate"],
        "churn_rate": summary["churn_rate"],
        "nrr": summary["net_revenue_retention"]["rate"],
        "net_revenue": str(summary["revenue"]["net"]),
        "cac": str(summary["cac"]),
        "csat": summary["surveys"]["csat"]["score"],
        "nps": summary["surveys"]["nps"]["score"],
    }


if __name__ == "__main__":
    main()
