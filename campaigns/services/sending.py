"""Sending queued messages through Anymail, exactly once.

Each message is claimed with one conditional UPDATE (queued → sending) before it is handed
to the ESP, and marked sent (with the ESP's message id) right after. A task delivered
twice finds the message no longer queued and does nothing; a crash between the claim and
the ESP's answer leaves the message in "sending", which is reported and never retried
automatically: a possible lost message is visible, a duplicate never happens."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from campaigns.models import EmailTemplate, Message, Suppression
from campaigns.services.rendering import contact_links
from crm import clock
from crm.models import ConsentRecord

log = logging.getLogger(__name__)


def _claim(message_id: int) -> bool:
    return bool(
        Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
            status=Message.Status.SENDING
        )
    )


def message_skip_reason(message: Message) -> str:
    return skip_reasons([message]).get(message.pk, "")


def skip_reasons(messages: list[Message]) -> dict[int, str]:
    """Why each of these messages must not go out now (checked at send time, not only at
    enrolment: consent can change while a contact waits), in three queries for the batch.
    A suppressed address gets nothing, transactional mail included: an address that
    hard-bounced cannot receive a receipt either, and mailing complainers again hurts the
    sender's reputation. Marketing needs consent for "all" and for the message's topic."""
    if not messages:
        return {}
    suppressed = dict(
        Suppression.objects.filter(
            email__in={m.to_email.strip().lower() for m in messages}, lifted_at__isnull=True
        ).values_list("email", "reason")
    )
    marketing = [m for m in messages if m.category == EmailTemplate.Category.MARKETING]
    consent = _consents(
        {m.contact_id for m in marketing}, {"all", *(m.topic for m in marketing if m.topic)}
    )
    reasons: dict[int, str] = {}
    for message in messages:
        reason = suppressed.get(message.to_email.strip().lower())
        if reason:
            label = Suppression.Reason(reason).label
            reasons[message.pk] = f"suppressed: {label[:1].lower()}{label[1:]}"
        elif message.category != EmailTemplate.Category.MARKETING:
            continue
        elif consent.get((message.contact_id, "all")) != "granted":
            reasons[message.pk] = "no marketing consent"
        elif (
            message.topic
            and consent.get((message.contact_id, message.topic), "granted") != "granted"
        ):
            reasons[message.pk] = f"unsubscribed from the topic {message.topic!r}"
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


def build_email(message: Message) -> EmailMultiAlternatives:
    links = contact_links(message.contact)
    headers = {}
    if message.category == EmailTemplate.Category.MARKETING:
        headers["List-Unsubscribe"] = f"<{links['unsubscribe_url']}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    email = EmailMultiAlternatives(
        subject=message.subject,
        body=message.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[message.to_email],
        headers=headers,
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
    connection = get_connection()
    messages = list(
        Message.objects.filter(pk__in=ids, status=Message.Status.QUEUED)
        .select_related("contact", "enrollment__version")
        .order_by("pk")
    )
    reasons = skip_reasons(messages)
    try:
        connection.open()
        for message in messages:
            if not _claim(message.pk):
                continue  # another worker has it
            reason = reasons.get(message.pk)
            if reason:
                Message.objects.filter(pk=message.pk).update(
                    status=Message.Status.SKIPPED, error=reason
                )
                counts["skipped"] += 1
                continue
            email = build_email(message)
            try:
                connection.send_messages([email])
            except Exception as error:  # the ESP refused it; recorded, not retried blindly
                log.warning("sending message %s failed: %s", message.pk, error)
                Message.objects.filter(pk=message.pk).update(
                    status=Message.Status.FAILED, error=str(error)[:2000]
                )
                counts["failed"] += 1
                continue
            status = getattr(email, "anymail_status", None)
            Message.objects.filter(pk=message.pk).update(
                status=Message.Status.SENT,
                sent_at=clock.now(),
                esp_message_id=""
                if status is None or status.message_id is None
                else str(status.message_id),
            )
            counts["sent"] += 1
    finally:
        connection.close()
    return counts
