"""Concurrent batches creating the same new contacts never fail (no deadlock 500s) and
store each person and event once."""

import random
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from crm.models import Contact, Event

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_overlapping_batches_in_parallel(write_key):
    statuses, errors = [], []
    barrier = threading.Barrier(4)

    def post(seed: int) -> None:
        try:
            people = list(range(300))
            random.Random(seed).shuffle(
                people
            )  # every thread meets the same people in another order
            batch = [
                {
                    "name": "Product Viewed",
                    "email": f"p{n}@example.com",
                    "message_id": f"{seed}-{n}",
                }
                for n in people
            ]
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {write_key}")
            barrier.wait(timeout=10)
            for start in range(0, 300, 100):
                statuses.append(
                    client.post(
                        "/api/v1/events/", batch[start : start + 100], format="json"
                    ).status_code
                )
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert statuses == [200] * 12
    assert Contact.objects.count() == 300
    assert Event.objects.count() == 1200
