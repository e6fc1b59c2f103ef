"""What a crash leaves behind, made visible and healed; and how long message bodies stay.

- A message claimed for sending (queued → sending) whose chunk was never marked — the
  worker was killed, or the UPDATE after the ESP accepted the chunk failed — stays
  "sending". Past KEEPERS_SENDING_TIMEOUT_SECONDS the sweep makes it "unconfirmed": it may
  or may not have gone out. It is never resent automatically (that could send twice); an
  ESP tracking event for it (Anymail metadata carries Keepers' message id) confirms it as
  sent, and staff may resend the rest deliberately (messages_resend).
- An outbound webhook delivery whose retry task was lost (a worker died, the broker lost
  it) stays "pending" with its next try in the past; the sweep hands it out again.
- Message bodies (HTML, text) are emptied KEEPERS_MESSAGE_BODY_DAYS after the message was
  created; the row and its metadata (subject, status, timestamps) stay.

Every sweep is a set-based UPDATE; each runs from beat (CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce

from campaigns.models import Message, WebhookDelivery
from campaigns.tasks import messages_send_task, webhook_deliver_task
from crm import clock

log = logging.getLogger(__name__)

UNCONFIRMED_NOTE = (
    "unconfirmed: claimed for sending at {at} and never marked; it may or may not have been sent"
)
RESEND_BATCH = 500


def messages_unconfirmed_sweep(*, now: dt.datetime | None = None) -> int:
    """Messages left "sending" past the timeout become "unconfirmed", in one UPDATE.
    Returns how many."""
    now = now or clock.now()
    cutoff = now - dt.timedelta(seconds=settings.KEEPERS_SENDING_TIMEOUT_SECONDS)
    stale = Message.objects.filter(status=Message.Status.SENDING).filter(
        Q(claimed_at__lt=cutoff) | Q(claimed_at__isnull=True, created_at__lt=cutoff)
    )
    count = stale.update(
        status=Message.Status.UNCONFIRMED,
        error=UNCONFIRMED_NOTE.format(at=cutoff.isoformat(timespec="seconds")),
    )
    if count:
        log.warning("%s messages left sending past the timeout are now unconfirmed", count)
    return count


def message_confirm(
    *, message: Message, esp_message_id: str, at: dt.datetime, accepted: bool
) -> bool:
    """An ESP tracking event about a message still "sending" or "unconfirmed": the ESP had
    it, so it was sent (or, for a rejection, it failed). A conditional UPDATE: a message
    already marked keeps its status. Returns whether it changed."""
    unresolved = [Message.Status.SENDING, Message.Status.UNCONFIRMED]
    rows = Message.objects.filter(pk=message.pk, status__in=unresolved)
    if accepted:
        changed = rows.update(
            status=Message.Status.SENT,
            sent_at=Coalesce(F("sent_at"), at),
            esp_message_id=esp_message_id or F("esp_message_id"),
            error="",
        )
    else:
        changed = rows.update(
            status=Message.Status.FAILED,
            esp_message_id=esp_message_id or F("esp_message_id"),
            error="the ESP rejected it (reported by its tracking webhook)",
        )
    return bool(changed)


@transaction.atomic
def messages_resend(*, ids: list[int]) -> int:
    """Staff's deliberate resend of unconfirmed messages: back to "queued" (only those
    still unconfirmed) and handed to senders after the commit. Some may have reached the
    customer already and will arrive twice. Returns how many were queued again."""
    if not ids:
        return 0
    requeued = list(
        Message.objects.filter(pk__in=ids, status=Message.Status.UNCONFIRMED).values_list(
            "pk", flat=True
        )
    )
    Message.objects.filter(pk__in=requeued, status=Message.Status.UNCONFIRMED).update(
        status=Message.Status.QUEUED, claimed_at=None, error=""
    )

    def hand_out() -> None:
        for start in range(0, len(requeued), RESEND_BATCH):
            messages_send_task.delay(requeued[start : start + RESEND_BATCH])

    transaction.on_commit(hand_out)
    return len(requeued)


def webhooks_lost_sweep(*, now: dt.datetime | None = None) -> int:
    """Pending webhook deliveries whose next try is overdue by more than
    KEEPERS_WEBHOOK_LOST_SECONDS (their task was lost) are handed out again; their next
    try moves ahead by that grace first, so one lost task is re-queued once a grace period.
    A delivery both re-queued and still retried by a late task may be POSTed twice: it
    carries the same Idempotency-Key both times."""
    now = now or clock.now()
    grace = dt.timedelta(seconds=settings.KEEPERS_WEBHOOK_LOST_SECONDS)
    lost = list(
        WebhookDelivery.objects.filter(status="pending")
        .annotate(due=Coalesce("next_attempt_at", "created_at"))
        .filter(due__lt=now - grace)
        .values_list("pk", flat=True)[:10_000]
    )
    if not lost:
        return 0
    WebhookDelivery.objects.filter(pk__in=lost, status="pending").update(
        next_attempt_at=now + grace
    )
    for pk in lost:
        webhook_deliver_task.delay(pk)
    log.warning("%s webhook deliveries with a lost retry were handed out again", len(lost))
    return len(lost)


def message_bodies_purge(*, now: dt.datetime | None = None, batch: int = 10_000) -> int:
    """Empty the HTML and text of messages older than KEEPERS_MESSAGE_BODY_DAYS (0: keep
    them for ever), in UPDATEs of `batch` rows; what is not finished (queued, sending,
    unconfirmed: it may still be sent) keeps its body. Returns how many were emptied."""
    days = settings.KEEPERS_MESSAGE_BODY_DAYS
    if not days:
        return 0
    now = now or clock.now()
    old = Message.objects.filter(
        created_at__lt=now - dt.timedelta(days=days), body_purged_at__isnull=True
    ).exclude(
        status__in=[Message.Status.QUEUED, Message.Status.SENDING, Message.Status.UNCONFIRMED]
    )
    total, last = 0, 0
    while True:  # in primary-key order from where the last batch ended: one pass over the rows
        ids = list(old.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            return total
        last = ids[-1]
        total += Message.objects.filter(pk__in=ids).update(html="", text="", body_purged_at=now)
