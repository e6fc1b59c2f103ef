"""Outbound webhooks: a signed JSON POST (HMAC-SHA256 over "<timestamp>.<body>" in
X-Keepers-Signature, with X-Keepers-Timestamp), retried with exponential backoff."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request

from django.conf import settings
from django.db import transaction

from campaigns.models import WebhookDelivery
from campaigns.steps import webhook_signature
from campaigns.tasks import webhook_deliver_task
from crm import clock
from crm.errors import KeepersError

MAX_ATTEMPTS = 8
ANSWER_KEPT = 2000  # characters of the integrator's answer kept for the log


@transaction.atomic
def webhook_retry(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Try a pending or failed delivery again now (staff's "retry now"): it goes back to
    pending, due now, and one try is queued after commit. A delivery that had given up
    gets one more try; failing again leaves it failed. A delivered one is refused (409).
    Safe to run twice: webhook_deliver sends only a pending delivery, and the integrator
    sees the same Idempotency-Key on every try."""
    updated = WebhookDelivery.objects.filter(
        pk=delivery.pk, status__in=["pending", "failed"]
    ).update(status="pending", next_attempt_at=clock.now())
    if not updated:
        raise KeepersError(
            "This webhook was delivered already; it is not sent again.",
            code="conflict",
            status_code=409,
        )
    transaction.on_commit(lambda: webhook_deliver_task.delay(delivery.pk))
    delivery.refresh_from_db()
    return delivery


def webhook_deliver(*, delivery_id: int, attempt: int = 0) -> int | None:
    """POST once. Returns seconds until the next try, or None when done (delivered or
    given up)."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id, status="pending").first()
    if delivery is None:
        return None
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(clock.now().timestamp()))
    request = urllib.request.Request(
        delivery.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Keepers-Webhooks/1",
            "X-Keepers-Timestamp": timestamp,
            "X-Keepers-Signature": f"v1={webhook_signature(settings.KEEPERS_WEBHOOK_SECRET, timestamp, body)}",
            "Idempotency-Key": delivery.idempotency_key,
        },
    )
    code, error, answer = None, "", ""
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            code = response.status
            answer = _answer_start(response)
    except urllib.error.HTTPError as failure:
        code, error, answer = failure.code, f"HTTP {failure.code}", _answer_start(failure)
    except (urllib.error.URLError, TimeoutError, OSError) as failure:
        error = str(failure)[:500]
    attempts = delivery.attempts + 1
    if code is not None and 200 <= code < 300:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status="delivered",
            attempts=attempts,
            last_status_code=code,
            last_response=answer,
            delivered_at=clock.now(),
        )
        return None
    gave_up = attempts >= MAX_ATTEMPTS
    # the backoff follows the delivery's own attempts, so a try re-queued by the lost-task
    # sweep (campaigns.services.recovery) continues the series instead of restarting it
    retry_in = None if gave_up else min(3600, 30 * 2 ** max(attempt, delivery.attempts))
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status="failed" if gave_up else "pending",
        attempts=attempts,
        last_status_code=code,
        last_error=error,
        last_response=answer,
        next_attempt_at=None if gave_up else clock.now() + dt.timedelta(seconds=retry_in),
    )
    return retry_in


def _answer_start(stream) -> str:
    """The first 2,000 characters of the integrator's answer, for staff reading the log
    (an answer that breaks off while being read is kept as far as it came)."""
    try:
        return stream.read(ANSWER_KEPT).decode("utf-8", "replace")[:ANSWER_KEPT]
    except (OSError, ValueError):
        return ""
