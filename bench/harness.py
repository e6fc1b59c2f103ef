"""What the benchmarks in bench/ share, written once: the PostgreSQL they talk to (127.0.0.1
only) and a database of their own on it, Django on that database, the synthetic shop the
engine and broadcast benchmarks load, CPU accounting from /proc, batches run in forked
processes, and the pieces of their reports and command lines.

Not a benchmark: the scripts import it (their own directory is first on sys.path when they
are run), and nothing here runs on import.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TextIO, TypeVar

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the only host the benchmarks talk to
PORT = 5432
USER = "postgres"
TEST_SETTINGS = "config.settings.test"
TEST_EMAIL_BACKEND = "anymail.backends.test.EmailBackend"

_statement_timeout_ms = 300_000  # setup_django(statement_timeout=…) sets it

Job = TypeVar("Job")


def log(msg: str, *, file: TextIO | None = None) -> None:
    """A timestamped progress line, on stderr unless `file` says otherwise."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=file or sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# PostgreSQL and Django
# ------------------------------------------------------------------------------------------
def dsn(db: str) -> str:
    return f"host={HOST} port={PORT} user={USER} dbname={db}"


def database_url(db: str) -> str:
    return f"postgres://{USER}@{HOST}:{PORT}/{db}"


def pg(db: str, **kwargs: Any):
    """A psycopg connection of the script's own (not Django's) to `db`."""
    import psycopg

    return psycopg.connect(dsn(db), **kwargs)


def set_statement_timeout(target: Any) -> None:
    """Put a connection or cursor of the script's own under the statement timeout."""
    target.execute(f"SET statement_timeout = '{_statement_timeout_ms}'")


def _bench_database(db: str) -> str:
    # the benchmarks drop what they are given: only a database named for them
    if not db.replace("_", "").isalnum() or not db.startswith("keepers_bench"):
        raise SystemExit(
            f"Refusing database name {db!r}: it must start with keepers_bench and hold only"
            " letters, digits and underscores."
        )
    return db


def drop_database(db: str) -> None:
    with pg("postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {_bench_database(db)} WITH (FORCE)")


def recreate_database(db: str) -> None:
    """Drop and create `db`, empty; refuses any name that does not start with
    keepers_bench, so a benchmark can never drop the application's or the tests'
    database."""
    drop_database(db)
    with pg("postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {_bench_database(db)}")


def setup_django(
    db: str,
    *,
    statement_timeout: float | None = None,
    settings_module: str = TEST_SETTINGS,
    env: Mapping[str, str] | None = None,
) -> None:
    """Django on `db`, DEBUG off, logging at WARNING, every connection it opens under the
    statement timeout (`statement_timeout` seconds, else the last one set, 300 s at
    first). With config.settings.test, the default, it checks what the benchmarks rely
    on: eager Celery and Anymail's test backend. `env` adds to the environment the
    settings read."""
    global _statement_timeout_ms
    if statement_timeout is not None:
        _statement_timeout_ms = int(statement_timeout * 1000)
    test = settings_module == TEST_SETTINGS
    os.environ["DATABASE_URL"] = database_url(db)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    if test:
        os.environ["EMAIL_BACKEND"] = TEST_EMAIL_BACKEND
    os.environ["DEBUG"] = "false"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.update(env or {})
    sys.path.insert(0, str(ROOT))
    import django
    from django.conf import settings

    django.setup()
    if test:
        settings.EMAIL_BACKEND = TEST_EMAIL_BACKEND
        settings.DEBUG = False
        assert settings.CELERY_TASK_ALWAYS_EAGER, "expected eager Celery (config.settings.test)"
    from django.db.backends.signals import connection_created

    def _timeout(sender, connection, **kwargs):
        with connection.cursor() as cursor:
            set_statement_timeout(cursor)

    connection_created.connect(_timeout, weak=False)


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def setup_fresh(db: str, *, statement_timeout: float | None = None) -> None:
    """`db` recreated empty, Django set up on it (config.settings.test) and migrated."""
    recreate_database(db)
    setup_django(db, statement_timeout=statement_timeout)
    migrate()


def drop_secondary(cur, table: str) -> tuple[list, list]:
    """Drop a table's foreign keys, unique constraints and plain indexes (keeping the
    primary key and checks), for a fast load; return what is needed to recreate them
    exactly (restore_secondary)."""
    cur.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('f', 'u') ORDER BY conname",
        [table],
    )
    constraints = cur.fetchall()
    cur.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND "
        "tablename = %s AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass) ORDER BY indexname",
        [table, table],
    )
    indexes = cur.fetchall()
    for name, _ in constraints:
        cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cur.execute(f'DROP INDEX "{name}"')
    return constraints, indexes


def restore_secondary(cur, table: str, saved: tuple[list, list]) -> None:
    constraints, indexes = saved
    for _, definition in indexes:
        cur.execute(definition)
    for name, definition in constraints:
        cur.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


# ------------------------------------------------------------------------------------------
# The synthetic shop (engine and broadcast)
# ------------------------------------------------------------------------------------------
FIRST_NAMES = ["Ann", "Bob", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ida", "Jo", "Kim", "Lou", ""]
LAST_NAMES = ["Smith", "Garcia", "Martin", "Müller", "Rossi", "Tanaka", "Silva", "Dubois", "Khan"]
STAGES = [("subscriber", 0.80), ("first_time", 0.10), ("repeat", 0.07), ("loyal", 0.03)]
PLANS = ["gold", "silver", "bronze", "free"]
ADJECTIVES = ["Classic", "Organic", "Compact", "Deluxe", "Everyday", "Vintage", "Smart", "Mini"]
NOUNS = ["Kettle", "Sneakers", "Coffee Beans", "Notebook", "Backpack", "Headphones", "Mug", "Lamp"]
TIMEZONES = [  # candidates; those whose local time is in the daytime at load are used
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Sao_Paulo",
    "Atlantic/Azores",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Athens",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Bangkok",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Pacific/Honolulu",
]
EVENT_COLUMNS = [
    "contact_id",
    "anonymous_id",
    "name",
    "properties",
    "context",
    "occurred_at",
    "received_at",
    "source",
    "message_id",
]
COPY_EVENTS = f"COPY crm_event ({', '.join(EVENT_COLUMNS)}) FROM STDIN"


def daytime_zones(now: datetime, earliest: int = 9, latest: int = 14) -> list[str]:
    """Candidate zones where it is between `earliest` and `latest` o'clock now: far from the
    default quiet hours (21:00–08:00) for the length of a run, so every message may go at
    once (the send policy is still evaluated for each)."""
    from zoneinfo import ZoneInfo

    zones = [z for z in TIMEZONES if earliest <= now.astimezone(ZoneInfo(z)).hour < latest]
    return zones or ["UTC"]


def copy_products(
    cur, rng: random.Random, stamp: datetime, *, for_recommendations: bool = False
) -> None:
    """A 200-product catalog, SKU-00000 … SKU-00199, by COPY. `for_recommendations`: a few
    out of stock (never recommended) and the coffee replenishable; else all in stock."""
    with cur.copy(
        "COPY crm_product (product_id, name, url, image_url, price, currency, category,"
        " in_stock, replenishable, created_at, updated_at) FROM STDIN"
    ) as copy:
        for i in range(200):
            sku = f"SKU-{i:05d}"
            noun = NOUNS[(i // 8) % 8]
            copy.write_row(
                (
                    sku,
                    f"{ADJECTIVES[i % 8]} {noun} {i}",
                    f"https://shop.example.com/p/{sku}",
                    f"https://cdn.example.com/img/{sku}.jpg",
                    f"{rng.uniform(5, 250):.2f}",
                    "USD",
                    noun.lower(),
                    i % 25 != 3 if for_recommendations else True,
                    noun == "Coffee Beans" if for_recommendations else False,
                    stamp,
                    stamp,
                )
            )


def copy_contacts(
    cur, rng: random.Random, n: int, *, email: str, zones: list[str], stamp: datetime
) -> list[int]:
    """`n` contacts `{email}-{i}@example.com` by COPY, 80% in stage subscriber (STAGES),
    time zones taken in turn from `zones`. Returns their ids in order."""
    with cur.copy(
        "COPY crm_contact (email, first_name, last_name, phone, locale, timezone,"
        " attributes, source, channel, stage, created_at, updated_at) FROM STDIN"
    ) as copy:
        for i in range(n):
            u = rng.random()
            stage = STAGES[-1][0]
            for name, share in STAGES:
                if u < share:
                    stage = name
                    break
                u -= share
            copy.write_row(
                (
                    f"{email}-{i}@example.com",
                    FIRST_NAMES[i % len(FIRST_NAMES)],
                    LAST_NAMES[i % len(LAST_NAMES)],
                    "",
                    "en-US",
                    zones[i % len(zones)],
                    json.dumps({"plan": PLANS[i % 4], "city": "Springfield"}),
                    "bench",
                    "organic",
                    stage,
                    stamp,
                    stamp,
                )
            )
    cur.execute("SELECT id FROM crm_contact ORDER BY id")
    return [r[0] for r in cur.fetchall()]


# ------------------------------------------------------------------------------------------
# The machine: CPU from /proc, a quiet machine, other benchmarks, the code under test
# ------------------------------------------------------------------------------------------
def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state first); OSError if the
    process is gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (0 if unknown or gone)."""
    if not pid:
        return 0.0
    try:
        fields = proc_stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds since boot, all cores; busy is user + nice + system + irq
    + softirq + steal."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(v[:8])
    return (total - v[3] - v[4]) / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """Busy CPU seconds since boot, all cores (see machine_cpu)."""
    return machine_cpu()[0]


def backend_pid() -> int | None:
    """The PostgreSQL backend serving this process's Django connection (same machine)."""
    from django.db import connection

    connection.ensure_connection()
    return connection.connection.info.backend_pid


class Meter:
    """Wall time and CPU over a block: this process, the PostgreSQL backend serving its
    Django connection, and the whole machine."""

    def __enter__(self) -> Meter:
        self._pid = backend_pid()
        self._busy, self._pg = machine_busy(), cpu_seconds(self._pid)
        self._cpu, self._t0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.python_cpu = time.process_time() - self._cpu
        self.pg_cpu = cpu_seconds(self._pid) - self._pg
        self.machine_cpu = machine_busy() - self._busy

    def figures(self) -> dict[str, float]:
        return {
            "seconds": self.seconds,
            "python_cpu": self.python_cpu,
            "pg_cpu": self.pg_cpu,
            "machine_cpu": self.machine_cpu,
        }


def wait_for_quiet(limit: float, threshold: float = 0.3) -> dict:
    """Wait (at most `limit` seconds) until the machine is nearly idle: other work running
    at the same time would be measured too. Returns what was seen."""
    deadline = time.monotonic() + limit
    waited = time.perf_counter()
    next_note = 0.0
    while True:
        b0 = machine_busy()
        time.sleep(3)
        busy = (machine_busy() - b0) / 3
        if busy <= threshold or time.monotonic() > deadline:
            break
        if time.monotonic() >= next_note:
            log(f"the machine is busy ({busy:.2f} cores in use by other work); waiting …")
            next_note = time.monotonic() + 60
    return {
        "busy": busy,
        "quiet": busy <= threshold,
        "waited": time.perf_counter() - waited,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def other_benchmarks() -> list[str]:
    """Other bench/*.py processes on this machine (their load would be measured too): not
    this process, its parent, nor another run of this same script."""
    mine = {os.getpid(), os.getppid()}
    script = "bench/" + Path(sys.argv[0]).name
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        bench = any(w.startswith("bench/") or "/bench/" in w for w in words if w.endswith(".py"))
        if bench and not any(w.endswith(script) for w in words):
            found.append(f"{entry.name}: {' '.join(words)[:120]}")
    return found


def wait_for_benchmarks(limit: float) -> list[str]:
    """Wait (at most `limit` seconds) for other benchmarks to end; those still running."""
    deadline = time.monotonic() + limit
    while True:
        running = other_benchmarks()
        if not running or time.monotonic() > deadline:
            return running
        log(f"another benchmark is running ({running[0]}); waiting …")
        time.sleep(15)


def machine(
    pg_settings: Iterable[str] = ("shared_buffers", "synchronous_commit", "fsync", "wal_level"),
) -> dict:
    """Cores, CPU model, RAM, PostgreSQL's version and the named settings, Python and
    Django versions."""
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    with pg("postgres") as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in pg_settings}
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import django

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "pg": version,
        "pg_settings": shown,
        "python": platform.python_version(),
        "django": django.get_version(),
    }


def git(*cmd: str) -> str:
    """git's output in the checkout, "" if it fails. Read only: others commit while
    benchmarks run."""
    try:
        return subprocess.run(
            ["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def git_state(paths: Sequence[str], since: str | None = None) -> dict:
    """The commit, uncommitted changes to `paths` (the code under test), and (with `since`,
    a commit) what changed in them since then."""
    head = git("log", "-1", "--format=%h%x00%s").strip().split("\0")
    out = {
        "commit": head[0],
        "subject": head[-1][:72],
        "uncommitted": [
            line[3:] for line in git("status", "--porcelain", "--", *paths).splitlines()
        ],
    }
    if since and head[0]:
        out["commits_since"] = len(git("log", "--format=%h", f"{since}..HEAD").split())
        out["changed_since"] = git("diff", "--name-only", since, "HEAD", "--", *paths).split()
    return out


# ------------------------------------------------------------------------------------------
# Batches, here or in forked processes; profiles
# ------------------------------------------------------------------------------------------
class BatchRun(NamedTuple):
    """What one batch tells run_batches: its counts, how many ids it took, its wall time and
    CPU (this process, its PostgreSQL backend), and anything else it hands back (the
    run concatenates them)."""

    counts: dict[str, int]
    ids: int
    wall: float
    python_cpu: float
    pg_cpu: float
    items: Sequence[Any] = ()


def _child_init() -> None:
    from django.db import connections

    connections.close_all()  # never share the parent's socket (it is closed before fork)


def run_batches(
    work: Callable[[Job], BatchRun], jobs: Sequence[Job], *, workers: int, timeout: float
) -> tuple[dict, list]:
    """work(job) for every job, in this process (workers <= 1) or in `workers` forked
    processes, each with its own connection, fed from one queue; bounded by `timeout`
    seconds. Returns the run's figures (ids done, batches, seconds, CPU of the Python
    processes, of their PostgreSQL backends and of the whole machine, median and slowest
    batch, whether it timed out, the batches' counts summed) and their items."""
    from django.db import connections

    totals: dict[str, int] = {}
    walls: list[float] = []
    items: list = []
    cpu = pg_cpu = 0.0
    done = 0
    timed_out = False
    busy0, t0 = machine_busy(), time.perf_counter()
    deadline = time.monotonic() + timeout

    def add(run: BatchRun) -> None:
        nonlocal cpu, pg_cpu, done
        done += run.ids
        for k, v in run.counts.items():
            totals[k] = totals.get(k, 0) + v
        walls.append(run.wall)
        cpu += run.python_cpu
        pg_cpu += run.pg_cpu
        items.extend(run.items)

    if workers <= 1:
        for job in jobs:
            if time.monotonic() > deadline:
                timed_out = True
                break
            add(work(job))
    else:
        connections.close_all()  # never share the parent's socket with the children
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_child_init)
        try:
            results = pool.imap_unordered(work, jobs)
            for _ in jobs:
                try:
                    run = results.next(timeout=max(deadline - time.monotonic(), 0.01))
                except multiprocessing.TimeoutError:
                    timed_out = True
                    break
                add(run)
        finally:
            if timed_out:
                pool.terminate()
            else:
                pool.close()
            pool.join()
    seconds = time.perf_counter() - t0
    figures = {
        "workers": workers,
        "ids": done,
        "batches": len(walls),
        "seconds": seconds,
        "python_cpu": cpu,
        "pg_cpu": pg_cpu,
        "machine_cpu": machine_busy() - busy0,
        "batch_median": statistics.median_high(walls) if walls else None,
        "batch_max": max(walls) if walls else None,
        "timed_out": timed_out,
        **totals,
    }
    return figures, items


def query_kinds(queries: Iterable[Mapping[str, str]]) -> dict[str, int]:
    """Captured queries counted by their first word (SELECT, UPDATE, …)."""
    kinds: dict[str, int] = {}
    for q in queries:
        word = q["sql"].split(None, 1)[0].upper()
        kinds[word] = kinds.get(word, 0) + 1
    return kinds


def profile_tops(prof: cProfile.Profile, limit: int) -> dict[str, str]:
    """The `limit` top functions by cumulative and by own time, as pstats prints them."""
    out = {}
    for order in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(order).print_stats(limit)
        lines = buf.getvalue().splitlines()
        start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
        out[order] = "\n".join(lines[start:]).rstrip()
    return out


def sample_message(**filters: Any) -> dict:
    """Subject and sizes of the first message sent (of those `filters` select)."""
    from campaigns.models import Message

    m = Message.objects.filter(status="sent", **filters).order_by("pk").first()
    if m is None:
        return {}
    return {"subject": m.subject, "html_bytes": len(m.html), "text_bytes": len(m.text)}


def phase_run(
    name: str, fn: Callable[[], dict], *, quiet_wait: float, counts: Sequence[str]
) -> dict:
    """One measured phase: wait (at most `quiet_wait` seconds) for other work on the machine
    to stop, run fn, and log what it did (items, rate, cores, CPU per item and the
    `counts` named). Returns fn's figures with what was seen before it (quiet_before)."""
    quiet = wait_for_quiet(quiet_wait)
    log(f"{name} … (other work before it: {quiet['busy']:.2f} cores)")
    out = fn()
    out["quiet_before"] = quiet
    unit = "sent" if out.get("sent") else "ids"
    r = rate(out, unit)
    log(
        f"{name}: {out['ids']:,} in {out['seconds']:.1f} s"
        + (f" → {r:,.0f} {unit}/s" if r else "")
        + (" (TIMED OUT)" if out["timed_out"] else "")
        + f"  cores py/pg/other {cores(out)}  CPU/item {cpu_per_item(out, unit)}"
        + f"  { ({k: v for k, v in out.items() if k in counts}) }"
    )
    return out


# ------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------
def rate(res: dict | None, unit: str = "ids") -> float | None:
    if not res or not res["seconds"] or not res.get(unit):
        return None
    return res[unit] / res["seconds"]


def fmt_rate(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("pass" if ok else "**FAIL**")


def cores(res: dict, *, min_seconds: float = 0.0) -> str:
    """CPU seconds per wall second: Python / its PostgreSQL backends / PostgreSQL's
    parallel workers (where measured) / everything else on the machine; "–" for a run
    shorter than `min_seconds`."""
    s = res["seconds"]
    if not s or s < min_seconds:
        return "–"
    parts = [res["python_cpu"] / s, res["pg_cpu"] / s]
    if "pg_workers_cpu" in res:
        parts.append(res["pg_workers_cpu"] / s)
    other = max(res["machine_cpu"] / s - sum(parts), 0.0)
    return " / ".join(f"{x:.2f}" for x in (*parts, other))


def cpu_per_item(res: dict, unit: str | None = None) -> str:
    """Python + its PostgreSQL backends' CPU per item (per message sent where any were)."""
    unit = unit or ("sent" if res.get("sent") else "ids")
    count = res.get(unit) or 0
    if not count:
        return "–"
    return f"{(res['python_cpu'] + res['pg_cpu']) / count * 1000:.2f} ms"


def cpu_bound_rate(res: dict | None, unit: str, nproc: int) -> float | None:
    """What `nproc` idle cores would do if the work were CPU-bound and scaled perfectly."""
    if not res or not res.get(unit):
        return None
    cpu = res["python_cpu"] + res["pg_cpu"]
    return res[unit] / cpu * nproc if cpu else None


def row(label: str, res: dict | None, unit: str, note: str = "") -> list[str]:
    """A run as a row: done, seconds, per second, median batch, cores, CPU per item, note."""
    if res is None:
        return [label, "–", "–", "–", "–", "–", "–", note]
    med = res["batch_median"]
    return [
        label,
        f"{res['ids']:,}" + (" (timed out)" if res["timed_out"] else ""),
        f"{res['seconds']:,.1f}",
        fmt_rate(rate(res, unit)),
        "–"
        if med is None
        else (f"{med * 1000:,.0f} ms" if med >= 0.001 else f"{med * 1e6:,.0f} µs"),
        cores(res),
        cpu_per_item(res, unit),
        note,
    ]


def table(rows: list[list[str]], header: list[str]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def sample_message_line(sm: dict) -> str:
    """A Setup line on the message sample_message found."""
    return (
        f"- A rendered message: subject “{sm['subject']}”, {sm['html_bytes']:,} bytes of"
        f" HTML (CSS inlined), {sm['text_bytes']:,} bytes of text."
    )


def machine_lines(info: dict, pg_settings: Mapping[str, str] | None = None) -> list[str]:
    """The report's first two Machine lines: cores and RAM, PostgreSQL and its settings."""
    shown = info["pg_settings"] if pg_settings is None else pg_settings
    return [
        f"- {info['nproc']} cores ({info['cpu']}), {info['ram_gb']} GB RAM",
        f"- PostgreSQL {info['pg']} on 127.0.0.1 ("
        + ", ".join(f"{k}={v}" for k, v in shown.items())
        + ")",
    ]


def quiet_line(quiet: dict) -> str:
    """How busy the machine was before measuring (wait_for_quiet's answer)."""
    return (
        f"- Before measuring: {quiet['busy']:.2f} cores busy with other work (load average"
        f" {' '.join(quiet['loadavg'])})"
        + ("" if quiet["quiet"] else " — **the machine was not idle**")
    )


def noisy_lines(res: dict, waited: float) -> list[str]:
    """A Checks line naming the phases that started on a busy machine, if any."""
    noisy = [
        k
        for k, v in res.items()
        if isinstance(v, dict) and v.get("quiet_before") and not v["quiet_before"]["quiet"]
    ]
    if not noisy:
        return []
    return [
        "- Phases that started while other work was running on the machine (after"
        f" waiting {waited:.0f} s for it to stop): {', '.join(noisy)}."
        " Their “other” cores above show how much."
    ]


def profile_lines(p: dict) -> list[str]:
    """A profiled batch's top functions (profile_tops), as the report shows them."""
    return [
        "Top by cumulative time:",
        "",
        "```",
        p["cumulative"],
        "```",
        "",
        "Top by own time:",
        "",
        "```",
        p["tottime"],
        "```",
        "",
    ]


# ------------------------------------------------------------------------------------------
# Flags and saving (engine, broadcast, metrics)
# ------------------------------------------------------------------------------------------
Build = Callable[[argparse.Namespace, dict, dict, float], tuple[str, str]]
"""build_report(args, info, res, total_s) → (console table, Markdown report)."""


def add_common_flags(
    p: argparse.ArgumentParser,
    *,
    db: str,
    out: str,
    waits_for_benchmarks: bool,
    each: str = "phase",
) -> None:
    """--db, --seed, --statement-timeout, the waits for a quiet machine, and the report's
    --analysis, --out, --no-write, --json and --report-from."""
    p.add_argument("--db", default=db)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--statement-timeout", type=float, default=300)
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=600,
        help="wait at most this long for other benchmarks to end and the machine to be idle"
        if waits_for_benchmarks
        else "wait at most this long for the machine to be idle before measuring",
    )
    p.add_argument(
        "--phase-quiet-wait",
        type=float,
        default=30,
        help=f"before each {each}, wait at most this long for other work on the machine to stop",
    )
    p.add_argument("--analysis", help="a Markdown file appended to the report as Analysis")
    p.add_argument("--out", default=out)
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--json", help="also dump the raw results to this file")
    p.add_argument(
        "--report-from",
        help="rebuild the report from a --json dump of an earlier run (with --analysis), no run",
    )


def read_analysis(args: argparse.Namespace) -> str | None:
    if args.analysis and Path(args.analysis).exists():
        return Path(args.analysis).read_text().strip()
    return None


def report_rebuild(args: argparse.Namespace, build: Callable[[dict], tuple[str, str]]) -> None:
    """--report-from: the report again from a --json dump (the run's own arguments, this
    call's --analysis, --out and --no-write); nothing is measured."""
    saved = json.loads(Path(args.report_from).read_text())
    for key, value in saved.get("args", {}).items():
        if key not in ("analysis", "out", "no_write", "json", "report_from"):
            setattr(args, key, value)
    analysis = read_analysis(args)
    if analysis:
        saved["analysis"] = analysis
    console, markdown = build(saved)
    print(console)
    if not args.no_write:
        Path(args.out).write_text(markdown)
        log(f"wrote {args.out}")


def report_save(
    args: argparse.Namespace,
    res: dict,
    *,
    info: dict,
    began: float,
    build: Build,
    partial: str | None = None,
    missing: str = "runs",
) -> None:
    """Write the report of what is measured so far (unless --no-write) and the --json dump.
    With `partial`, the phase just done: a run stopped from outside then leaves a report
    that says so (written only when a report is), and a failure to build it never stops
    the run. Without, the finished run: the console table is printed too."""
    if partial and args.no_write:
        return
    out = dict(res)
    if partial:
        out["partial"] = f"stopped after “{partial}”: later {missing} are missing"
    out.update(
        info=info,
        total_s=time.perf_counter() - began,
        argv=sys.argv[1:],
        args=dict(vars(args)),
        finished_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    try:
        console, md = build(args, info, out, out["total_s"])
        if args.json:
            Path(args.json).write_text(json.dumps(out, default=str, indent=1))
        if not args.no_write:
            Path(args.out).write_text(md)
    except Exception as error:  # a partial report must never stop the run
        log(f"report failed: {error!r}")
        if not partial:
            raise
        return
    if not partial:
        print(console)
        written = [path for path in (args.json, None if args.no_write else args.out) if path]
        if written:
            log("wrote " + " ".join(written))


# --- block (MJML) templates from the starter library's blocks -----------------------------
def mjml_bench_template(kind: str) -> str:
    """A block template of the same content as a benchmark's HTML one, built from
    campaigns.email_blocks (the starter library's blocks): "newsletter" (header, hero,
    text, a static 4-product grid, button, footer — the broadcast's main template),
    "newsletter-recs" (the grid from `{% recommendations %}`, as the starter newsletter)
    and "cart" (header, text, the cart's items, button, footer — the engine's). Needs
    Django set up."""
    from campaigns import email_blocks as b

    static_grid = "\n".join(
        f"""<mj-section padding="0 12px"><mj-group>{
            "".join(
                f'<mj-column padding="8px 4px"><mj-image src="https://cdn.example.com/img/{sku}.jpg" '
                f'alt="{name}" href="https://shop.example.com/p/{sku}" width="140px"></mj-image>'
                f'<mj-text align="center"><a href="https://shop.example.com/p/{sku}">{name}</a> '
                f"{price}</mj-text></mj-column>"
                for sku, name, price in row
            )
        }</mj-group></mj-section>"""
        for row in (
            (
                ("SKU-00011", "Organic Mug 11", "$24.00"),
                ("SKU-00024", "Classic Kettle 24", "$89.00"),
            ),
            (
                ("SKU-00042", "Deluxe Coffee Beans 42", "$18.50"),
                ("SKU-00077", "Vintage Lamp 77", "$64.00"),
            ),
        )
    )
    greeting = (
        "{% if first_name %}{{ first_name }}, you{% else %}You{% endif %} are one of our "
        "favourite readers. {% if attributes.plan == 'gold' %}<strong>Gold member:</strong> "
        "you earn double points on everything this week.{% endif %}"
    )
    if kind in ("newsletter", "newsletter-recs"):
        sections = [
            b.header(),
            b.hero(
                heading="New arrivals", body="A reader's story and 15% off everything until Sunday."
            ),
            b.text(heading="This week", body=greeting),
            b.products() if kind == "newsletter-recs" else static_grid,
            b.button(label="See everything new", url="{{ shop.url }}/new?utm_source=newsletter"),
            b.footer(),
        ]
    elif kind == "cart":
        sections = [
            b.header(),
            b.text(heading="Your cart is waiting", body=greeting),
            b.cart_items(),
            b.button(label="Back to your cart", url="{{ shop.url }}/cart"),
            b.footer(),
        ]
    else:
        raise ValueError(kind)
    return b.mjml_document("\n".join(sections), title="{{ shop.name }}")
