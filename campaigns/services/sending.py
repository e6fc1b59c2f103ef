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
from crm.selectors import consent_current

log = logging.getLogger(__name__)


def _claim(message_id: int) -> bool:
    return bool(
        Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
            status=Message.Status.SENDING
        )
    )


def message_skip_reason(message: Message) -> str:
    """Why this message must not go out now, or "" (checked at send time, not only at
    enrollment: consent can change while a contact waits). A suppressed address gets
    nothing, transactional mail included: an address that hard-bounced cannot receive a
    receipt either, and mailing complainers again hurts the sender's reputation."""
    suppression = (
        Suppression.objects.filter(email__iexact=message.to_email.strip(), lifted_at__isnull=True)
        .only("reason")
        .first()
    )
    if suppression is not None:
        reason = suppression.get_reason_display()
        return f"suppressed: {reason[:1].lower()}{reason[1:]}"
    marketing = message.category == EmailTemplate.Category.MARKETING
    if (
        marketing
        and consent_current(contact=message.contact, channel="email", topic="all") != "granted"
    ):
        return "no marketing consent"
    if (
        marketing
        and message.topic
        and consent_current(contact=message.contact, channel="email", topic=message.topic)
        != "granted"
    ):
        return f"unsubscribed from the topic {message.topic!r}"
    return ""


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
    messages = (
        Message.objects.filter(pk__in=ids, status=Message.Status.QUEUED)
        .select_related("contact", "enrollment__version")
        .order_by("pk")
    )
    try:
        connection.open()
        for message in messages:
            if not _claim(message.pk):
                continue  # another worker has it
            reason = message_skip_reason(message)
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
