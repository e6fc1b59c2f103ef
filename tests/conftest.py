"""Shared fixtures. Tests that need PostgreSQL, Redis or Chromium carry a marker; without
the service they skip and say what to start, except in CI (KEEPERS_REQUIRE_SERVICES=1),
where a missing service fails the run instead of hiding tests."""

from __future__ import annotations

import os
import socket
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


@pytest.fixture
def celery_worker_process(transactional_db):
    """A real `celery worker` in a subprocess, on Redis, against this test's database.
    Yields a function that sends a task by name through Redis."""
    import subprocess
    import sys
    import time

    from celery import Celery
    from django.db import connection as conn

    db = conn.settings_dict
    database_url = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        if conn.vendor == "postgresql"
        else f"sqlite:///{db['NAME']}"
    )
    broker = os.environ["REDIS_URL"]
    queue = f"test-{os.getpid()}-{time.monotonic_ns()}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.dev",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "DEBUG": "false",
    }
    root = Path(__file__).resolve().parents[1]
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "-Q",
            queue,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=warning",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    sender = Celery(broker=broker)

    def send(name: str, *args) -> None:
        sender.send_task(name, args=args, queue=queue)

    try:
        yield send
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


@pytest.fixture(autouse=True)
def _anymail_test_backend(settings):
    """pytest-django swaps in Django's locmem backend; mail in Keepers' tests goes through
    Anymail's test backend instead (same outbox, plus Anymail's status and parameters)."""
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
