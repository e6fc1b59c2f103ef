"""Shared fixtures. Tests that need PostgreSQL, Redis or Chromium carry a marker; without
the service they skip and say what to start, except in CI (KEEPERS_REQUIRE_SERVICES=1),
where a missing service fails the run instead of hiding tests."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.db import connection
from rest_framework.test import APIClient

REQUIRE = os.environ.get("KEEPERS_REQUIRE_SERVICES") == "1"


def _redis_up() -> bool:
    url = os.environ.get("REDIS_URL")
    if not url:
        return False
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), 1).close()
    except OSError:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    is_pg = connection.vendor == "postgresql"
    missing = {
        "postgres": None
        if is_pg
        else "needs PostgreSQL: start it and set DATABASE_URL "
        "(bin/test does when PostgreSQL answers on 127.0.0.1:5432)",
        "redis": None
        if _redis_up()
        else "needs Redis: start redis-server on 127.0.0.1:6379 or set REDIS_URL",
        "browser": None
        if Path("/usr/bin/chromium").exists()
        else "needs Chromium: apt-get install chromium",
    }
    for item in items:
        for marker, reason in missing.items():
            if reason and marker in item.keywords:
                if REQUIRE:
                    raise pytest.UsageError(f"{item.nodeid} {reason}; CI runs every test.")
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def write_key(db) -> str:
    from crm.services.api_keys import api_key_create

    return api_key_create(name="tests", scope="write")[1]


@pytest.fixture
def read_key(db) -> str:
    from crm.services.api_keys import api_key_create

    return api_key_create(name="tests-read", scope="read")[1]


@pytest.fixture
def api(write_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {write_key}")
    return client


@pytest.fixture
def read_api(read_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_key}")
    return client


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw")
    client.force_login(user)
    client.user = user
    return client


class Keepers:
    """Real Keepers processes for end-to-end tests: Celery workers and beat on Redis, against
    this test's database, sharing a movable clock and a file outbox with the test."""

    def __init__(self, tmp_path: Path, settings) -> None:
        import time

        from django.db import connection as conn

        db = conn.settings_dict
        self.database_url = (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
            if conn.vendor == "postgresql"
            else f"sqlite:///{db['NAME']}"
        )
        self.broker = os.environ["REDIS_URL"]
        self.queue = f"test-{os.getpid()}-{time.monotonic_ns()}"
        self.outbox_dir = tmp_path / "outbox"
        self.outbox_dir.mkdir()
        self.clock_file = tmp_path / "clock"
        # The shared clock starts at the next 09:00 UTC, whenever the suite runs: a test
        # that moves it by hours or days must not land in quiet hours (21:00-08:00) by
        # accident of the time of day it was started.
        real = datetime.now(UTC)
        start = real.replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1)
        self.clock_file.write_text(str((start - real).total_seconds()))
        settings.KEEPERS_CLOCK_FILE = str(self.clock_file)
        self.processes: dict[str, object] = {}
        self.root = Path(__file__).resolve().parents[1]
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.dev",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "DEBUG": "false",
            "KEEPERS_CLOCK_FILE": str(self.clock_file),
            "KEEPERS_TEST_OUTBOX": str(self.outbox_dir),
            "KEEPERS_FAST_BEAT": "1",
            "EMAIL_BACKEND": "tests.outbox_backend.EmailBackend",
            "KEEPERS_VAR_DIR": str(tmp_path / "var"),
            "LOG_LEVEL": "WARNING",
            "KEEPERS_SEND_QUEUE": f"{self.queue}-send",
            "KEEPERS_FREQUENT_QUEUE": f"{self.queue}-frequent",
            "KEEPERS_STALE_QUEUED_SECONDS": "5",
            # links the worker signs must verify in the test's live server
            "SECRET_KEY": settings.SECRET_KEY,
        }

    def _start(self, name: str, args: list[str]) -> None:
        import subprocess
        import sys

        log = open(self.outbox_dir.parent / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args],
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def worker(self, name: str = "worker", concurrency: int = 2, queues: str = "all") -> None:
        """queues: "all", "engine" (everything but sending: the default and the frequent
        tasks' queues) or "send"."""
        names = {
            "all": f"{self.queue},{self.queue}-frequent,{self.queue}-send",
            "engine": f"{self.queue},{self.queue}-frequent",
            "send": f"{self.queue}-send",
        }
        self._start(
            name,
            [
                "worker",
                "-n",
                f"{name}@%h",
                "-Q",
                names[queues],
                "--concurrency",
                str(concurrency),
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=warning",
            ],
        )

    def beat(self) -> None:
        self._start(
            "beat",
            [
                "beat",
                "--loglevel=warning",
                "-s",
                str(self.outbox_dir.parent / "beat.db"),
                "--max-interval",
                "1",
            ],
        )

    def kill(self, name: str) -> None:
        """SIGKILL the process group's main process: no clean shutdown, as a crash."""
        import signal

        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        # its prefork children die with it once the parent is gone; make sure
        import subprocess

        subprocess.run(["pkill", "-9", "-f", f"{name}@%h -Q {self.queue}"], check=False)

    def send(self, task: str, *args) -> None:
        from celery import Celery

        # not the process's current app: later tests' tasks must stay in-process (eager)
        Celery(broker=self.broker, set_as_current=False).send_task(
            task, args=args, queue=self.queue
        )

    def advance_clock(self, seconds: float) -> None:
        current = float(self.clock_file.read_text() or 0)
        temporary = self.clock_file.with_suffix(".tmp")
        temporary.write_text(str(current + seconds))
        temporary.replace(self.clock_file)  # atomic: readers see the old or the new offset

    def outbox(self) -> list[dict]:
        import json

        files = sorted(self.outbox_dir.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        return [json.loads(p.read_text()) for p in files]

    def wait_for(self, predicate, timeout: float = 60, what: str = "the condition") -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.25)
        logs = "\n".join(
            p.read_text(errors="replace")[-3000:] for p in self.outbox_dir.parent.glob("*.log")
        )
        raise AssertionError(
            f"timed out waiting for {what}; state:\n{self.state()}\nprocess logs:\n{logs}"
        )

    def state(self) -> str:
        """Where the engine stands, for a timeout's message."""
        from campaigns.models import Enrollment, Message

        enrollments = list(
            Enrollment.objects.values_list(
                "contact__email", "status", "current_step", "next_run_at"
            )
        )
        messages = list(Message.objects.values_list("to_email", "subject", "status", "error"))
        clock_offset = self.clock_file.read_text()
        return f"clock offset {clock_offset}\nenrollments {enrollments}\nmessages {messages}"

    def stop(self) -> None:
        import subprocess

        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(["pkill", "-9", "-f", "--", f"-Q {self.queue}"], check=False)
        subprocess.run(["pkill", "-9", "-f", str(self.outbox_dir.parent / "beat.db")], check=False)
        from django.db import connection as conn

        if conn.vendor == "postgresql":  # no straggler may keep the test database open
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture
def keepers(transactional_db, tmp_path, settings):
    running = Keepers(tmp_path, settings)
    yield running
    running.stop()


@pytest.fixture
def celery_worker_process(keepers):
    """A single worker; yields a function that sends a task by name through Redis."""
    keepers.worker(concurrency=1)
    return keepers.send


@pytest.fixture(autouse=True)
def _anymail_test_backend(settings):
    """pytest-django swaps in Django's locmem backend; mail in Keepers' tests goes through
    Anymail's test backend instead (same outbox, plus Anymail's status and parameters)."""
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"


@pytest.fixture(autouse=True)
def _no_quiet_hours_unless_asked(request, settings):
    """Quiet hours (21:00-08:00 in the contact's zone) would make every test that sends
    marketing mail on the real clock depend on the time of day the suite runs. They are
    off unless a test is marked `quiet_hours` (those move time themselves)."""
    if request.node.get_closest_marker("quiet_hours") is None:
        settings.KEEPERS_QUIET_HOURS = []


@pytest.fixture(autouse=True)
def _keepers_celery_app():
    """Every test sends tasks through Keepers' own (eager, in tests) Celery app, whatever
    an earlier test made current in this thread."""
    from config.celery import app

    app.set_current()


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate limits and throttles live in the cache: each test starts clean."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def browser_page():
    """A page in headless Chromium (Debian's package, never a downloaded browser).
    Playwright's sync API runs an event loop in this thread, so Django's ORM must be told
    that is fine here (DJANGO_ALLOW_ASYNC_UNSAFE)."""
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
        page = context.new_page()
        # Every page must work under its Content-Security-Policy: a violation (Chromium's
        # "Refused to ..." console error, or a securitypolicyviolation event) fails the test.
        violations: list[str] = []
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation', (e) => console.error("
            "`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}"
            " at ${e.sourceFile}:${e.lineNumber} on ${document.location.pathname}`));"
        )
        page.on(
            "console",
            lambda message: (
                violations.append(f"{page.url}: {message.text}")
                if "Content Security Policy" in message.text
                or message.text.startswith(("Refused to", "CSP violation"))
                else None
            ),
        )
        from django.db import connections

        # While Playwright runs, the ORM in this thread uses the connections of Playwright's
        # async context, kept between tests; a `keepers` fixture's teardown may have
        # terminated them. Start and end with fresh ones.
        connections.close_all()
        yield page
        connections.close_all()
        browser.close()
        assert not violations, "\n".join(violations)
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def marketer_page(live_server, browser_page, django_user_model):
    """Chromium signed in to the admin as Mia, a staff user with only the marketer role
    (the groups post_migrate makes; roles_sync puts them back after a transactional test's
    flush), on a desktop-sized window, at /admin/. `page.base` is the live server's URL;
    confirmation dialogs are accepted."""
    from django.contrib.auth.models import Group
    from playwright.sync_api import expect

    from crm.services.roles import roles_sync

    roles_sync()
    user = django_user_model.objects.create_user("mia", "mia@example.com", "pw-for-tests")
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name="marketer"))
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "mia")
    page.fill("#id_password", "pw-for-tests")
    page.click("input[type=submit]")
    # logged in before the test navigates: a goto or reload during the login's redirect
    # fails with "Not attached to an active page" on a busy machine
    expect(page).to_have_url(f"{live_server.url}/admin/")
    page.on("dialog", lambda dialog: dialog.accept())
    page.base = live_server.url
    return page


@pytest.fixture(scope="session", autouse=True)
def _close_stray_connections(django_db_setup, django_db_blocker):
    """Live-server threads and worker processes can leave connections to the test
    database; close them so it can be dropped cleanly at the end."""
    yield
    from django.db import connection as conn

    if conn.vendor == "postgresql":
        with django_db_blocker.unblock(), conn.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
