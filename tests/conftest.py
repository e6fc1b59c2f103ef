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
        "postgres": None if is_pg else "needs PostgreSQL: start it and set DATABASE_URL "
        "(bin/test does when PostgreSQL answers on 127.0.0.1:5432)",
        "redis": None if _redis_up() else "needs Redis: start redis-server on 127.0.0.1:6379 "
        "or set REDIS_URL",
        "browser": None if Path("/usr/bin/chromium").exists() else "needs Chromium: "
        "apt-get install chromium",
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
