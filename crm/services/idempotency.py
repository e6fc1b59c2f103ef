"""Idempotency-Key for API writes: the same key with the same body replays the first
result; the same key with a different body is refused (422)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from django.db import IntegrityError, transaction

from crm.errors import KeepersError
from crm.models import IdempotencyRecord


def idempotent(
    *, scope: str, key: str | None, body: object, produce: Callable[[], tuple[dict, int]]
) -> tuple[dict, int]:
    """Run `produce` once per (scope, key); later calls get the stored response."""
    if not key:
        return produce()
    if len(key) > 200:
        raise KeepersError("Idempotency-Key is at most 200 characters.", field="Idempotency-Key")
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    previous = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
    if previous is None:
        try:
            with transaction.atomic():
                response, status = produce()
                IdempotencyRecord.objects.create(
                    scope=scope, key=key, request_hash=digest, response=response, status_code=status
                )
                return response, status
        except IntegrityError:
            previous = IdempotencyRecord.objects.get(scope=scope, key=key)
    if previous.request_hash != digest:
        raise KeepersError(
            "This Idempotency-Key was used with a different request body.",
            code="idempotency_key_reused",
            status_code=422,
            field="Idempotency-Key",
        )
    return previous.response, previous.status_code
