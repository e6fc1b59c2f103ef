"""Data migrations of campaigns, run forwards on rows made before them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from campaigns.models import Suppression
from crm.services.privacy import address_hash


@pytest.mark.django_db(transaction=True)
def test_0012_keys_existing_suppressions_by_the_hash_the_send_path_checks():
    executor = MigrationExecutor(connection)
    executor.migrate([("campaigns", "0011_message_unconfirmed_retention_webhook_due")])
    old = executor.loader.project_state(
        [("campaigns", "0011_message_unconfirmed_retention_webhook_due")]
    ).apps.get_model("campaigns", "Suppression")
    for email in ("ann@example.com", "Zoë.Łukasz@example.jp"):
        old.objects.create(
            email=email, reason="hard_bounce", source="test", created_at="2026-01-01T00:00Z"
        )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    hashes = dict(Suppression.objects.values_list("email", "email_hash"))
    assert hashes == {email: address_hash(email) for email in hashes}
