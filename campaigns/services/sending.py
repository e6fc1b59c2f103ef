"""Sending queued messages through Anymail, exactly once.

Messages are claimed in chunks with one conditional UPDATE … RETURNING (queued → sending)
before they are handed to the ESP, and the chunk is marked sent / skipped / failed with one
UPDATE right after. A task delivered twice finds the messages no longer queued and does
nothing. A crash between a chunk's claim and its marking leaves at most that chunk
(SEND_CHUNK messages) in "sending"; past KEEPERS_SENDING_TIMEOUT_SECONDS a sweep makes
them "unconfirmed" (campaigns.services.recovery), never retried automatically: a possible
lost message is visible and counted, a duplicate never happens. The chunk trades that window
against round trips: two statements per chunk instead of two commits per message."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Protocol

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection
from django.db.models import Case, Value, When

from campaigns.models import EmailTemplate, Message, Suppression
from campaigns.services.rendering import contact_links
from crm import clock
from crm.models import ConsentRecord, Topic
from crm.services.privacy import address_hash

log = logging.getLogger(__name__)


SEND_CHUNK = 50


def _claim(ids: list[int]) -> set[int]:
    """Move those of these messages still queued to "sending", in one statement; returns
    the ids this caller won (another worker may hold the rest)."""
    if not ids:
        return set()
    table = connection.ops.quote_name(Message._meta.db_table)
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, claimed_at = %s "
            f"WHERE status = %s AND id IN ({marks}) RETURNING id",
            [Message.Status.SENDING, clock.now(), Message.Status.QUEUED, *ids],
        )
        return {row[0] for row in cursor.fetchall()}


def _mark(
    sent: list[tuple[int, str]], skipped: list[tuple[int, str]], failed: list[tuple[int, str]]
) -> None:
    """Record the outcome of a claimed chunk: (id, ESP message id) for sent, (id, reason)
    for skipped and failed. One UPDATE per outcome (elsewhere than PostgreSQL, with a CASE
    on the id for the per-message column: about 3 parameters a message)."""
    now = clock.now()
    if connection.vendor != "postgresql":

        def per_message(rows: list[tuple[int, str]]) -> Case:
            return Case(*(When(pk=pk, then=Value(value)) for pk, value in rows))

        if sent:
            Message.objects.filter(pk__in=[pk for pk, _ in sent]).update(
                status=Message.Status.SENT, sent_at=now, esp_message_id=per_message(sent)
            )
        for status, rows in ((Message.Status.SKIPPED, skipped), (Message.Status.FAILED, failed)):
            if rows:
                Message.objects.filter(pk__in=[pk for pk, _ in rows]).update(
                    status=status, error=per_message(rows)
                )
        return
    table = connection.ops.quote_name(Message._meta.db_table)
    with connection.cursor() as cursor:
        if sent:
            cursor.execute(
                f"UPDATE {table} AS m SET status = %s, sent_at = %s, esp_message_id = v.esp "
                "FROM unnest(%s::bigint[], %s::text[]) AS v(id, esp) WHERE m.id = v.id",
                [Message.Status.SENT, now, [pk for pk, _ in sent], [e for _, e in sent]],
            )
        for status, rows in ((Message.Status.SKIPPED, skipped), (Message.Status.FAILED, failed)):
            if rows:
                cursor.execute(
                    f"UPDATE {table} AS m SET status = %s, error = v.error "
                    "FROM unnest(%s::bigint[], %s::text[]) AS v(id, error) WHERE m.id = v.id",
                    [status, [pk for pk, _ in rows], [e for _, e in rows]],
                )


class Sendable(Protocol):
    """What the send-time checks read of a message: a Message, or an Addressee."""

    contact_id: int
    to_email: str
    category: str
    topic: str


@dataclass(frozen=True)
class Addressee:
    """Who a message would go to, for the checks before anything is rendered (a
    broadcast batch skips the refused without rendering for them)."""

    contact_id: int
    to_email: str
    category: str
    topic: str = ""


def message_skip_reason(message: Message) -> str:
    return skip_reasons([message]).get(message.pk, "")


def skip_reasons(
    messages: Sequence[Sendable], key: Callable[[Any], Hashable] = attrgetter("pk")
) -> dict[Hashable, str]:
    """Why each of these messages must not go out now (checked at send time, not only at
    enrolment: consent can change while a contact waits), in three queries for the batch.
    A suppressed address gets nothing, transactional mail included: an address that
    hard-bounced cannot receive a receipt either, and mailing complainers again hurts the
    sender's reputation. Marketing needs consent for "all" and for the message's topic.
    Keyed by pk, or by `key` for what has no pk (a broadcast's Addressees)."""
    if not messages:
        return {}
    # By the address's hash: an erased address keeps only its hash, and stays suppressed.
    suppressed = dict(
        Suppression.objects.filter(
            email_hash__in={address_hash(m.to_email) for m in messages}, lifted_at__isnull=True
        ).values_list("email_hash", "reason")
    )
    marketing = [m for m in messages if m.category == EmailTemplate.Category.MARKETING]
    topics = {m.topic for m in marketing if m.topic}
    consent = _consents({m.contact_id for m in marketing}, {"all", *topics})
    # a topic that is not opt-in by default needs the contact's own yes (Topic.default_opt_in)
    opt_in_only = (
        set(
            Topic.objects.filter(slug__in=topics, default_opt_in=False).values_list(
                "slug", flat=True
            )
        )
        if topics
        else set()
    )
    reasons: dict[Hashable, str] = {}
    for message in messages:
        reason = suppressed.get(address_hash(message.to_email))
        if reason:
            label = Suppression.Reason(reason).label
            reasons[key(message)] = f"suppressed: {label[:1].lower()}{label[1:]}"
        elif message.category != EmailTemplate.Category.MARKETING:
            continue
        elif consent.get((message.contact_id, "all")) != "granted":
            reasons[key(message)] = "no marketing consent"
        elif not message.topic:
            continue
        elif message.topic in opt_in_only and (message.contact_id, message.topic) not in consent:
            reasons[key(message)] = f"not subscribed to the opt-in topic {message.topic!r}"
        elif consent.get((message.contact_id, message.topic), "granted") != "granted":
            reasons[key(message)] = f"unsubscribed from the topic {message.topic!r}"
    return reasons


def _consents(contact_ids: set[int], topics: set[str]) -> dict[tuple[int, str], str]:
    """The newest email consent per (contact, topic), as crm.selectors.consent_current
    reads it, for many contacts at once."""
    if not contact_ids:
        return {}
    latest: dict[tuple[int, str], str] = {}
    rows = (
        ConsentRecord.objects.filter(contact_id__in=contact_ids, channel="email", topic__in=topics)
        .order_by("contact_id", "topic", "-recorded_at", "-id")
        .values_list("contact_id", "topic", "status")
    )
    for contact_id, topic, status in rows:
        latest.setdefault((contact_id, topic), status)
    return latest


def email_build(message: Message) -> EmailMultiAlternatives:
    links = contact_links(message.contact)
    headers = {}
    if message.category == EmailTemplate.Category.MARKETING:
        headers["List-Unsubscribe"] = f"<{links['unsubscribe_url']}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # the template's Reply-To as it was when the message was queued, else the shop's
    reply_to = message.reply_to or settings.KEEPERS_REPLY_TO
    email = EmailMultiAlternatives(
        subject=message.subject,
        body=message.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[message.to_email],
        headers=headers,
        reply_to=[reply_to] if reply_to else None,
    )
    email.attach_alternative(message.html, "text/html")
    tags = [message.category]
    if message.campaign_id:
        tags.append(f"campaign-{message.campaign_id}")
    email.tags = tags
    email.metadata = {
        "message_id": str(message.pk),
        "campaign_id": str(message.campaign_id or ""),
        "enrollment_id": str(message.enrollment_id or ""),
        "step_id": message.step_id,
    }
    if message.enrollment_id:
        email.metadata["version"] = str(message.enrollment.version.number)
    return email


def messages_send(*, ids: list[int]) -> dict[str, int]:
    counts = {"sent": 0, "skipped": 0, "failed": 0}
    queued = list(
        Message.objects.filter(pk__in=ids, status=Message.Status.QUEUED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not queued:
        return counts
    esp = get_connection()
    try:
        esp.open()
        for start in range(0, len(queued), SEND_CHUNK):
            claimed = _claim(queued[start : start + SEND_CHUNK])
            if not claimed:
                continue  # another worker has them
            messages = list(
                Message.objects.filter(pk__in=claimed)
                .select_related("contact", "enrollment__version")
                .order_by("pk")
            )
            _send_chunk(esp, messages, counts)
    finally:
        esp.close()
    return counts


def _send_chunk(esp, messages: list[Message], counts: dict[str, int]) -> None:
    reasons = skip_reasons(messages)
    sent: list[tuple[int, str]] = []
    skipped: list[tuple[int, str]] = []
    failed: list[tuple[int, str]] = []
    try:
        for message in messages:
            reason = reasons.get(message.pk)
            if reason:
                skipped.append((message.pk, reason))
                continue
            email = email_build(message)
            try:
                esp.send_messages([email])
            except Exception as error:  # the ESP refused it; recorded, not retried blindly
                log.warning("sending message %s failed: %s", message.pk, error)
                failed.append((message.pk, str(error)[:2000]))
                continue
            status = getattr(email, "anymail_status", None)
            esp_id = "" if status is None or status.message_id is None else str(status.message_id)
            sent.append((message.pk, esp_id))
    finally:
        # also when something unexpected stops the chunk: what was handed to the ESP is
        # recorded as sent; the rest stays in "sending", visible, never sent twice
        _mark(sent, skipped, failed)
        counts["sent"] += len(sent)
        counts["skipped"] += len(skipped)
        counts["failed"] += len(failed)
