#!/usr/bin/env python
"""Ingestion benchmark: Keepers on PostgreSQL behind gunicorn, fed by a separate process.

    .venv/bin/python bench/ingest.py                  # 200,000 events per endpoint
    .venv/bin/python bench/ingest.py --events 10000   # a quick check
    .venv/bin/python bench/ingest.py --markdown       # also print a Markdown table

What it does, in one run:

1. drops and recreates the database (default `keepers_bench` on 127.0.0.1:5432, user
   postgres), runs `manage.py migrate` and `manage.py create_api_key bench --scope write`
   with `config.settings.prod`;
2. starts `gunicorn config.wsgi:application -w WORKERS` on a free 127.0.0.1 port;
3. for each endpoint, starts a load generator in a separate process (this file with
   `--loadgen`), which builds every request body first, then sends them over CONCURRENCY
   connections with httpx and reports per-request latencies:
   - `/v1/batch`: Segment-compatible, 100 messages a request (as the SDKs batch), HTTP Basic;
   - `/api/v1/events/`: the REST API, 1,000 events a request, Bearer;
4. counts the rows written (every table, before and after) and checks that crm_event holds
   each event sent exactly once (per source);
5. COPYs the same rows (read back from crm_event) into `bench_copy`, a `LIKE crm_event
   INCLUDING ALL` table with the same indexes and foreign key, to measure the physical
   limit; and, for reference, the same rows as the app's own multi-row
   `INSERT … ON CONFLICT DO NOTHING RETURNING`, from one connection;
6. prints a table (and `--markdown`), and stops gunicorn.

Only 127.0.0.1 is ever contacted. Every loop is bounded; `--timeout` bounds each phase.
What the benchmarks share (the database and its name guard, CPU accounting, machine
info) is in bench/harness.py.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import io
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

# bench/harness.py: this script's directory is first on sys.path when it is run (the load
# generator imports this file the same way)
from harness import (
    EVENT_COLUMNS,
    HOST,
    ROOT,
    cpu_seconds,
    database_url,
    drop_database,
    log,
    machine,
    machine_cpu,
    pg,
    recreate_database,
    table,
)

SECRET_KEY = "bench-secret-key-" + "x" * 48
ENDPOINTS = {
    # name: (path, events per request, crm_event.source)
    "segment": ("/v1/batch", 100, "segment"),
    "api": ("/api/v1/events/", 1000, "api"),
}
MAX_ATTEMPTS = 3  # per request: SDKs retry 5xx and connection errors


# --------------------------------------------------------------------------------------
# Synthetic events
# --------------------------------------------------------------------------------------

CATEGORIES = ["shoes", "coffee", "books", "kitchen", "garden", "toys", "audio", "outdoor"]
EVENT_MIX = [("Product Viewed", 0.55), ("Page Viewed", 0.30), ("Product Added", 0.15)]
PATHS = ["/", "/sale", "/new", "/c/{cat}", "/p/{sku}", "/cart", "/search?q={cat}"]


def _event_name(rng: random.Random) -> str:
    x = rng.random()
    for name, share in EVENT_MIX:
        if x < share:
            return name
        x -= share
    return EVENT_MIX[-1][0]


def _properties(rng: random.Random, name: str) -> dict:
    category = rng.choice(CATEGORIES)
    sku = f"SKU-{rng.randrange(5000):05d}"
    if name == "Page Viewed":
        path = rng.choice(PATHS).format(cat=category, sku=sku)
        return {
            "url": f"https://shop.example.com{path}",
            "path": path.split("?")[0],
            "title": f"{category.title()} | Keepers Demo Shop",
            "referrer": rng.choice(["", "https://www.google.com/", "https://t.co/"]),
        }
    props = {
        "product_id": sku,
        "category": category,
        "price": round(rng.uniform(3, 250), 2),
        "currency": "USD",
        "url": f"https://shop.example.com/p/{sku}",
    }
    if name == "Product Added":
        props["quantity"] = rng.randint(1, 3)
        props["cart_id"] = f"cart-{rng.randrange(10**8):08d}"
    return props


def build_bodies(
    endpoint: str, events: int, users: int, seed: int, run_id: str
) -> list[tuple[bytes, int]]:
    """Every request body for the run, serialised up front: (JSON bytes, event count).
    The same seed gives the same events; message ids are unique per run."""
    _path, per_request, _source = ENDPOINTS[endpoint]
    rng = random.Random(f"{seed}-{endpoint}")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    bodies = []
    for start in range(0, events, per_request):
        count = min(per_request, events - start)
        items = []
        for i in range(start, start + count):
            user = rng.randrange(users)
            name = _event_name(rng)
            at = (base + timedelta(seconds=rng.randrange(30 * 86400))).isoformat()
            at = at.replace("+00:00", "Z")
            props = _properties(rng, name)
            message_id = f"{run_id}-{endpoint}-{i}"
            if endpoint == "segment":
                message = {
                    "type": "page" if name == "Page Viewed" else "track",
                    "userId": f"seg-{user}",
                    "messageId": message_id,
                    "timestamp": at,
                    "properties": props,
                    "context": {"library": {"name": "analytics-python", "version": "2.3.4"}},
                }
                if name != "Page Viewed":
                    message["event"] = name
                items.append(message)
            else:
                item = {
                    "name": name,
                    "properties": props,
                    "occurred_at": at,
                    "message_id": message_id,
                }
                # A third of the REST API's users are known by email, the rest by external id.
                if user % 3 == 0:
                    item["email"] = f"api-user-{user}@example.com"
                else:
                    item["external_id"] = f"api-{user}"
                items.append(item)
        if endpoint == "segment":
            sent_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            payload: object = {"batch": items, "sentAt": sent_at}
        else:
            payload = items
        bodies.append((json.dumps(payload, separators=(",", ":")).encode(), count))
    return bodies


# --------------------------------------------------------------------------------------
# Load generator (runs in its own process: `ingest.py --loadgen SPEC.json`)
# --------------------------------------------------------------------------------------


def loadgen(spec_path: str) -> None:
    import httpx

    spec = json.loads(Path(spec_path).read_text())
    endpoint = spec["endpoint"]
    path, _per_request, _source = ENDPOINTS[endpoint]
    bodies = build_bodies(endpoint, spec["events"], spec["users"], spec["seed"], spec["run_id"])
    if endpoint == "segment":
        auth = "Basic " + base64.b64encode(f"{spec['key']}:".encode()).decode()
    else:
        auth = f"Bearer {spec['key']}"
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    url = f"http://{HOST}:{spec['port']}{path}"

    lock = threading.Lock()
    next_index = iter(range(len(bodies)))
    latencies: list[float] = []  # seconds, successful requests
    failures: list[str] = []  # every failed attempt, retried or not
    totals = {"created": 0, "duplicates": 0, "item_errors": 0, "lost": 0, "bad_body": 0}
    deadline = time.monotonic() + spec["timeout"]

    def worker() -> None:
        with httpx.Client(headers=headers, timeout=spec["request_timeout"]) as client:
            while time.monotonic() < deadline:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                body, count = bodies[index]
                for attempt in range(MAX_ATTEMPTS):
                    began = time.perf_counter()
                    try:
                        response = client.post(url, content=body)
                    except httpx.HTTPError as error:
                        failure = f"{type(error).__name__}: {error}"
                        response = None
                    elapsed = time.perf_counter() - began
                    if response is not None and response.status_code == 200:
                        data = response.json()
                        with lock:
                            latencies.append(elapsed)
                            if endpoint == "segment":
                                if data == {"success": True}:
                                    totals["created"] += count
                                else:
                                    totals["bad_body"] += 1
                            else:
                                totals["created"] += data.get("created", 0)
                                totals["duplicates"] += data.get("duplicates", 0)
                                totals["item_errors"] += data.get("errors", 0)
                        break
                    if response is not None:
                        failure = f"HTTP {response.status_code}: {response.text[:300]}"
                    with lock:
                        failures.append(failure)
                    if response is not None and response.status_code < 500:
                        break  # a 4xx is not retried
                    time.sleep(0.2 * (attempt + 1))
                else:
                    with lock:
                        totals["lost"] += count

    # Bodies are built: tell the parent, which snapshots CPU counters, and wait for "go".
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    cpu0, began = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(spec["concurrency"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    result = {
        "endpoint": endpoint,
        "events": sum(count for _, count in bodies),
        "requests": len(bodies),
        "seconds": seconds,
        "latencies": latencies,
        "failures": failures,
        "client_cpu": time.process_time() - cpu0,
        "timed_out": time.monotonic() >= deadline,
        **totals,
    }
    Path(spec["out"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------


def app_env(args) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.prod",
        SECRET_KEY=SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url(args.database),
        SECURE_SSL_REDIRECT="false",
        DEBUG="false",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict, *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn in its own session; stopped at exit whatever happens."""

    def __init__(self, env: dict, workers: int, port: int, log_path: Path):
        self.port, self.log_path = port, log_path
        self.log_file = open(log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--workers",
                str(workers),
                "--bind",
                f"{HOST}:{port}",
                "--timeout",
                "120",
                "--graceful-timeout",
                "10",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        atexit.register(self.stop)

    def wait_ready(self, seconds: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if (
                    httpx.get(f"http://{HOST}:{self.port}/api/v1/health/", timeout=2).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise SystemExit(
            f"gunicorn did not answer in {seconds}s:\n{self.log_path.read_text()[-3000:]}"
        )

    def worker_pids(self) -> list[int]:
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in children.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to the gunicorn master, which stops its workers
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log_file.close()


class CpuMeter:
    """CPU used during a phase, sampled twice a second from /proc so that processes which
    exit mid-phase (a database connection past CONN_MAX_AGE) still count: the gunicorn
    workers, the PostgreSQL backends of the bench database, PostgreSQL's own processes
    (WAL writer, checkpointer, autovacuum), everything else by command line, and the whole
    machine (which also includes interrupt time no process is charged for)."""

    def __init__(self, server: Server, dbname: str):
        self.server, self.dbname = server, dbname

    def start(self) -> None:
        self.baseline = {pid: cpu for pid, (_cmd, cpu) in _all_processes().items()}
        self.last: dict[int, tuple[str, float]] = {}
        self.app_pids: set[int] = set()
        self.machine0 = machine_cpu()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while True:
            self.app_pids.update(self.server.worker_pids())
            self.last.update(_all_processes())
            if self.done.wait(0.5):
                return

    def stop(self) -> dict:
        self.done.set()
        self.thread.join(timeout=10)
        self.app_pids.update(self.server.worker_pids())
        self.last.update(_all_processes())
        busy, total = (now - then for now, then in zip(machine_cpu(), self.machine0, strict=True))
        app = db = pg = client = 0.0
        others: dict[str, float] = {}
        for pid, (cmd, cpu) in self.last.items():
            spent = cpu - self.baseline.get(pid, 0.0)
            if spent <= 0:
                continue
            if pid in self.app_pids:
                app += spent
            elif "--loadgen" in cmd:
                client += spent
            elif cmd.startswith("postgres:") and f" {self.dbname} " in cmd:
                db += spent
            elif cmd.startswith("postgres:"):
                pg += spent
            else:
                name = " ".join(cmd.split()[:3])[:60] or str(pid)
                others[name] = others.get(name, 0.0) + spent
        top = {k: v for k, v in sorted(others.items(), key=lambda kv: -kv[1])[:5] if v >= 0.1}
        return {
            "app_cpu": app,
            "db_cpu": db,
            "pg_other_cpu": pg,
            "loadgen_cpu": client,
            "machine_busy": busy,
            "machine_total": total,
            "other_cpu": top,
        }


def _all_processes() -> dict[int, tuple[str, float]]:
    """pid -> (command line, CPU seconds) for every process we can see."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found[int(entry.name)] = (cmdline.strip(), cpu_seconds(int(entry.name)))
    return found


def table_counts(dbname: str) -> dict[str, int]:
    with pg(dbname) as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            ).fetchall()
        ]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def exactly_once(dbname: str, source: str, prefix: str, sent: int) -> dict:
    with pg(dbname) as conn:
        rows, distinct, ours = conn.execute(
            "SELECT count(*), count(DISTINCT message_id), count(*) FILTER (WHERE message_id LIKE %s)"
            " FROM crm_event WHERE source = %s",
            [prefix + "%", source],
        ).fetchone()
    return {
        "rows": rows,
        "distinct": distinct,
        "ours": ours,
        "ok": rows == distinct == ours == sent,
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run_endpoint(
    args, endpoint: str, port: int, key: str, run_id: str, meter: CpuMeter, tmp: Path
) -> dict:
    _path, per_request, source = ENDPOINTS[endpoint]
    spec = {
        "endpoint": endpoint,
        "events": args.events,
        "users": args.users,
        "seed": args.seed,
        "run_id": run_id,
        "key": key,
        "port": port,
        "concurrency": args.concurrency,
        "timeout": args.timeout,
        "request_timeout": 120,
        "out": str(tmp / f"{endpoint}.json"),
    }
    spec_path = tmp / f"{endpoint}-spec.json"
    spec_path.write_text(json.dumps(spec))
    counts_before = table_counts(args.database)
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--loadgen", str(spec_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if proc.stdout.readline().strip() != "ready":  # EOF if the child died while building
        proc.wait(timeout=60)
        raise SystemExit(f"The {endpoint} load generator failed before sending.")
    meter.start()
    proc.stdin.write("go\n")
    proc.stdin.close()
    try:
        # Body building comes first and is not timed; allow for it on top of the timeout.
        proc.wait(timeout=args.timeout + 300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise SystemExit(f"The {endpoint} load generator did not finish in time.") from None
    if proc.returncode:
        raise SystemExit(f"The {endpoint} load generator failed ({proc.returncode}).")
    cpu = meter.stop()
    result = json.loads(Path(spec["out"]).read_text())
    counts_after = table_counts(args.database)
    written = {
        t: counts_after[t] - counts_before.get(t, 0)
        for t in counts_after
        if counts_after[t] != counts_before.get(t, 0)
    }
    check = exactly_once(args.database, source, f"{run_id}-{endpoint}-", args.events)
    latencies = result.pop("latencies")
    result.update(
        path=ENDPOINTS[endpoint][0],
        per_request=per_request,
        rate=result["events"] / result["seconds"],
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        max_ms=max(latencies, default=float("nan")) * 1000,
        written=written,
        check=check,
        **cpu,
    )
    return result


def copy_limit(dbname: str, source: str, insert_batch: int) -> dict:
    """COPY the rows an endpoint stored into bench_copy (same columns, indexes and foreign
    key as crm_event), then the same rows as multi-row INSERT … ON CONFLICT DO NOTHING
    RETURNING statements, as the app sends them. Both timed up to and including COMMIT."""
    columns = ", ".join(EVENT_COLUMNS)
    with pg(dbname) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute("CREATE TABLE bench_copy (LIKE crm_event INCLUDING ALL)")
        conn.execute(
            "ALTER TABLE bench_copy ADD FOREIGN KEY (contact_id) REFERENCES crm_contact (id)"
            " DEFERRABLE INITIALLY DEFERRED"
        )
        conn.commit()
        buffer = io.BytesIO()
        with (
            conn.cursor() as cur,
            cur.copy(
                f"COPY (SELECT {columns} FROM crm_event WHERE source = %s ORDER BY id) TO STDOUT",
                [source],
            ) as copy,
        ):
            for chunk in copy:
                buffer.write(chunk)
        conn.commit()
        data = buffer.getvalue()
        rows = data.count(b"\n")

        began = time.perf_counter()
        view = memoryview(data)
        with conn.cursor() as cur, cur.copy(f"COPY bench_copy ({columns}) FROM STDIN") as copy:
            for start in range(0, len(data), 1 << 20):
                copy.write(view[start : start + (1 << 20)])
        conn.commit()
        copy_seconds = time.perf_counter() - began

        # The same rows again, as the app writes them: one multi-row INSERT per request.
        conn.execute("TRUNCATE bench_copy")
        conn.commit()
        with conn.cursor() as cur:
            values = cur.execute(
                f"SELECT {columns} FROM crm_event WHERE source = %s ORDER BY id", [source]
            ).fetchall()
        conn.commit()
        from psycopg.types.json import Jsonb

        values = [(*v[:3], Jsonb(v[3]), Jsonb(v[4]), *v[5:]) for v in values]
        began = time.perf_counter()
        with conn.cursor() as cur:
            for start in range(0, len(values), insert_batch):
                part = values[start : start + insert_batch]
                placeholders = ", ".join(
                    ["(" + ", ".join(["%s"] * len(EVENT_COLUMNS)) + ")"] * len(part)
                )
                cur.execute(
                    f"INSERT INTO bench_copy ({columns}) VALUES {placeholders}"
                    " ON CONFLICT (source, message_id) DO NOTHING RETURNING id, source, message_id",
                    [x for row in part for x in row],
                )
                cur.fetchall()
                conn.commit()
        insert_seconds = time.perf_counter() - began
        conn.execute("DROP TABLE bench_copy")
        conn.commit()
    return {
        "rows": rows,
        "bytes": len(data),
        "copy_seconds": copy_seconds,
        "copy_rate": rows / copy_seconds,
        "insert_batch": insert_batch,
        "insert_seconds": insert_seconds,
        "insert_rate": rows / insert_seconds,
    }


def machine_info() -> dict:
    """harness.machine, under the names this benchmark's report and --json use."""
    info = machine(("shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_wal_size"))
    import gunicorn

    return {
        "cpus": info["nproc"],
        "cpu_model": info["cpu"],
        "ram_gib": info["ram_gb"],
        "postgres": info["pg"],
        "pg_settings": info["pg_settings"],
        "python": info["python"],
        "django": info["django"],
        "gunicorn": gunicorn.__version__,
        "kernel": platform.release(),
    }


def rows_text(written: dict) -> str:
    short = {"crm_event": "events", "crm_contact": "contacts", "crm_stagechange": "stage changes"}
    parts = [f"{n:,} {short.get(t, t)}" for t, n in sorted(written.items(), key=lambda kv: -kv[1])]
    return " + ".join(parts) or "0"


def report(args, info: dict, results: list[dict], limits: dict[str, dict], markdown: bool) -> str:
    header = [
        "endpoint",
        "events",
        "seconds",
        "events/s",
        "p50 ms",
        "p99 ms",
        "rows written",
        "exactly once",
    ]
    lines = []
    for r in results:
        c = r["check"]
        once = (
            "yes"
            if c["ok"] and not r["lost"]
            else f"NO ({c['rows']:,} rows, {c['distinct']:,} distinct)"
        )
        if r["failures"]:
            once += f" ({len(r['failures'])} failed attempts retried)"
        lines.append(
            [
                f"{r['path']} ({r['per_request']:,}/req)",
                f"{r['events']:,}",
                f"{r['seconds']:.1f}",
                f"{r['rate']:,.0f}",
                f"{r['p50_ms']:.0f}",
                f"{r['p99_ms']:.0f}",
                rows_text(r["written"]),
                once,
            ]
        )
        lim = limits.get(r["endpoint"])
        if not lim:
            continue
        for label, seconds, rate in (
            ("COPY, same rows, 1 connection", lim["copy_seconds"], lim["copy_rate"]),
            (
                f"INSERT…ON CONFLICT RETURNING, same rows, {lim['insert_batch']:,}/stmt, 1 connection",
                lim["insert_seconds"],
                lim["insert_rate"],
            ),
        ):
            lines.append(
                [
                    f"↳ {label}",
                    f"{lim['rows']:,}",
                    f"{seconds:.2f}",
                    f"{rate:,.0f}",
                    "",
                    "",
                    f"{lim['rows']:,} (bench_copy)",
                    "",
                ]
            )
    if markdown:
        out = [table(lines, header)]
    else:
        widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
        out += [fmt.format(*line) for line in lines]
    out.append("")
    for r in results:
        attributed = r["app_cpu"] + r["db_cpu"] + r["pg_other_cpu"] + r["loadgen_cpu"]
        attributed += sum(r["other_cpu"].values())
        out.append(
            f"{r['path']}: {r['requests']:,} requests over {args.concurrency} connections, max "
            f"{r['max_ms']:.0f} ms. CPU in {r['seconds']:.1f}s wall: gunicorn workers "
            f"{r['app_cpu']:.1f}s ({r['app_cpu'] / r['events'] * 1e6:.0f} µs/event), PostgreSQL "
            f"backends {r['db_cpu']:.1f}s ({r['db_cpu'] / r['events'] * 1e6:.0f} µs/event), "
            f"other PostgreSQL processes {r['pg_other_cpu']:.1f}s, load generator "
            f"{r['loadgen_cpu']:.1f}s; machine {r['machine_busy']:.1f}s busy of "
            f"{r['machine_total']:.1f}s ({r['machine_busy'] / r['machine_total']:.0%}), "
            f"{r['machine_busy'] - attributed:.1f}s of it not charged to a process (interrupts)."
        )
        if r.get("other_cpu"):
            out.append(
                "  other processes: "
                + ", ".join(f"{name} {sec:.1f}s" for name, sec in r["other_cpu"].items())
            )
        if r["failures"]:
            out.append(f"  first failure: {' '.join(r['failures'][0].split())[:200]}")
        if r["endpoint"] == "api":
            out.append(
                f"  responses said: {r['created']:,} created, {r['duplicates']:,} duplicates, "
                f"{r['item_errors']:,} errors"
            )
    out.append(
        f"Machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['ram_gib']} GiB RAM, "
        f"PostgreSQL {info['postgres']}, Python {info['python']}, Django {info['django']}, "
        f"gunicorn {info['gunicorn']} ({args.workers} sync workers)."
    )
    return "\n".join(out)


def profile(args, endpoint: str, key: str) -> None:
    """Send the endpoint's requests through the WSGI app in this process under cProfile
    (no server, no network) and print where the time goes."""
    import cProfile
    import pstats

    os.environ.update(app_env(args))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler

    app = WSGIHandler()
    path, _per_request, _source = ENDPOINTS[endpoint]
    bodies = build_bodies(endpoint, args.events, args.users, args.seed, uuid.uuid4().hex[:8])
    if endpoint == "segment":
        auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    else:
        auth = f"Bearer {key}"

    def call(body: bytes) -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "SERVER_NAME": HOST,
            "SERVER_PORT": "80",
            "HTTP_HOST": HOST,
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": auth,
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        statuses = []
        b"".join(app(environ, lambda status, headers, *_: statuses.append(status)))
        if not statuses[0].startswith("200"):
            raise SystemExit(f"{path} answered {statuses[0]}")

    call(bodies[0][0])  # warm up: imports, connection
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    for body, _count in bodies[1:]:
        call(body)
    profiler.disable()
    seconds = time.perf_counter() - began
    events = sum(count for _, count in bodies[1:])
    print(f"{path}: {events:,} events in {seconds:.1f}s in one process under cProfile")
    stats = pstats.Stats(profiler).sort_stats("cumulative")
    stats.print_stats(45)
    stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per endpoint")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--concurrency", type=int, default=4, help="client connections")
    parser.add_argument("--users", type=int, default=20_000, help="distinct users per endpoint")
    parser.add_argument("--endpoints", default="segment,api", help="comma-separated: segment,api")
    parser.add_argument("--database", default="keepers_bench")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per endpoint")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH as JSON")
    parser.add_argument(
        "--keep-db", action="store_true", help="do not drop the database at the end"
    )
    parser.add_argument(
        "--profile",
        metavar="ENDPOINT",
        choices=list(ENDPOINTS),
        help="instead of the benchmark: run --events through ENDPOINT in-process under cProfile",
    )
    parser.add_argument("--loadgen", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        loadgen(args.loadgen)
        return
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if not endpoints or any(e not in ENDPOINTS for e in endpoints):
        parser.error(f"--endpoints takes {', '.join(ENDPOINTS)}")
    if args.events < 1 or args.workers < 1 or args.concurrency < 1 or args.users < 1:
        parser.error("--events, --workers, --concurrency and --users must be positive")

    # SIGTERM/SIGHUP exit through atexit, which stops gunicorn.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))

    env = app_env(args)
    log(f"resetting database {args.database} and migrating")
    recreate_database(args.database)
    manage(env, "migrate", "--noinput", "-v0")
    key = manage(env, "create_api_key", "bench", "--scope", "write").strip().splitlines()[-1]
    if args.profile:
        profile(args, args.profile, key)
        return
    info = machine_info()

    tmp = Path(tempfile.mkdtemp(prefix="keepers-bench-"))
    port = free_port()
    server = Server(env, args.workers, port, tmp / "gunicorn.log")
    server.wait_ready()
    log(f"gunicorn ({args.workers} workers) on {HOST}:{port}; logs in {tmp}")
    meter = CpuMeter(server, args.database)
    run_id = uuid.uuid4().hex[:8]

    results, limits = [], {}
    for endpoint in endpoints:
        log(f"{endpoint}: sending {args.events:,} events to {ENDPOINTS[endpoint][0]}")
        result = run_endpoint(args, endpoint, port, key, run_id, meter, tmp)
        log(f"{endpoint}: {result['rate']:,.0f} events/s, exactly once: {result['check']['ok']}")
        results.append(result)
    server.stop()
    for endpoint in endpoints:
        log(f"{endpoint}: COPY and INSERT of the same rows")
        limits[endpoint] = copy_limit(args.database, ENDPOINTS[endpoint][2], ENDPOINTS[endpoint][1])

    print(report(args, info, results, limits, markdown=False))
    if args.markdown:
        print()
        print(report(args, info, results, limits, markdown=True))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"machine": info, "args": vars(args), "results": results, "limits": limits},
                indent=2,
                default=str,
            )
        )
    if not args.keep_db:
        drop_database(args.database)
    failed = [r for r in results if not r["check"]["ok"] or r["lost"]]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
