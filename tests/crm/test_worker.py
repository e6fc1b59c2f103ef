"""The nightly lifecycle task, run by a real Celery worker on Redis against PostgreSQL."""

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from crm.models import Contact, Stage
from crm.services.contacts import Identity
from crm.services.orders import OrderIn, orders_place

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_the_nightly_task_runs_on_a_real_worker(celery_worker_process):
    # given a customer whose only order is 200 days old, but whose stage was left stale
    orders_place(
        [
            OrderIn(
                external_id="w1",
                identity=Identity(email="w@example.com"),
                total=Decimal("10"),
                currency="USD",
                ordered_at=datetime.now(UTC) - timedelta(days=200),
                lines=[],
                attributes={},
            )
        ]
    )
    Contact.objects.update(stage=Stage.FIRST_TIME)
    # when beat's nightly task is delivered through Redis to a worker
    celery_worker_process("crm.tasks.lifecycle_recompute_all")
    # then the worker moves the contact to lapsed (polled, bounded)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and Contact.objects.get().stage != Stage.LAPSED:
        time.sleep(0.2)
    assert Contact.objects.get().stage == Stage.LAPSED
    assert Contact.objects.get().stage_changes.filter(reason="nightly recompute").exists()
