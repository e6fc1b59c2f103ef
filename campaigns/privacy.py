"""campaigns' part of a contact's export and erasure, registered with crm's
`privacy_register` (crm/extend.py) in CampaignsConfig.ready: messages (metadata and
bodies), their delivery events, suppressions of the contact's addresses, enrolments,
broadcast recipients, survey answers and webhook payloads."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from campaigns.models import (
    BroadcastRecipient,
    DeliveryEvent,
    Enrollment,
    Message,
    StepRun,
    Suppression,
    SurveyAnswer,
    WebhookDelivery,
)
from crm.extend import Erasure, address_hash, privacy_rows
from crm.models import Contact


def campaigns_identifiers(contact: Contact) -> set[str]:
    """Every address the contact's messages went to (an address changed since counts)."""
    return set(
        Message.objects.filter(contact=contact).values_list("to_email", flat=True).distinct()
    ) - {""}


def _addresses(contact: Contact) -> set[str]:
    return {e.strip().lower() for e in campaigns_identifiers(contact) | {contact.email or ""} if e}


def campaigns_export(contact: Contact) -> dict[str, Any]:
    addresses = _addresses(contact)
    hashes = {address_hash(a) for a in addresses}
    messages = Message.objects.filter(contact=contact).order_by("created_at", "pk")
    return {
        "messages": privacy_rows(
            messages,
            "id",
            "campaign__name",
            "broadcast__name",
            "category",
            "topic",
            "to_email",
            "reply_to",
            "subject",
            "html",
            "text",
            "status",
            "esp_message_id",
            "error",
            "created_at",
            "sent_at",
            "delivered_at",
            "opened_at",
            "clicked_at",
            "bounced_at",
            "complained_at",
            "unsubscribed_at",
            "delivery_status",
        ),
        "delivery_events": privacy_rows(
            DeliveryEvent.objects.filter(
                Q(message__contact=contact) | Q(recipient__in=addresses)
            ).order_by("occurred_at", "pk"),
            "message_id",
            "esp_name",
            "event_type",
            "recipient",
            "url",
            "reject_reason",
            "description",
            "occurred_at",
        ),
        "suppressions": privacy_rows(
            Suppression.objects.filter(email_hash__in=hashes).order_by("created_at"),
            "email",
            "reason",
            "source",
            "detail",
            "created_at",
            "lifted_at",
            "lift_note",
        ),
        "enrollments": privacy_rows(
            Enrollment.objects.filter(contact=contact).order_by("entered_at", "pk"),
            "campaign__name",
            "status",
            "current_step",
            "entered_at",
            "finished_at",
            "holdout",
            "exit_reason",
            "state",
        ),
        "broadcasts": privacy_rows(
            BroadcastRecipient.objects.filter(contact=contact).order_by("send_at"),
            "broadcast__name",
            "variant",
            "status",
            "reason",
            "send_at",
            "message_id",
        ),
        "survey_answers": privacy_rows(
            SurveyAnswer.objects.filter(contact=contact).order_by("answered_at"),
            "survey__name",
            "ref",
            "score",
            "category",
            "comment",
            "answered_at",
            "updated_at",
        ),
    }


def campaigns_erase(contact: Contact, erasure: Erasure) -> None:
    addresses = set(erasure.emails)
    hashes = {address_hash(a) for a in addresses}
    # Nothing more goes to them: waiting enrolments end, queued messages are skipped.
    Enrollment.objects.filter(contact=contact, status=Enrollment.Status.ACTIVE).update(
        status=Enrollment.Status.EXITED_RULE, exit_reason="contact erased", finished_at=erasure.at
    )
    Message.objects.filter(contact=contact, status=Message.Status.QUEUED).update(
        status=Message.Status.SKIPPED
    )
    for message in Message.objects.filter(contact=contact):
        message.to_email = ""
        message.subject = erasure.text(message.subject)
        message.html = message.text = ""
        message.error = erasure.text(message.error)
        message.save(update_fields=["to_email", "subject", "html", "text", "error", "status"])
    # Another person's mail that names them (a referrer's "your friend … ordered").
    for message in erasure.matching(
        Message.objects.exclude(contact=contact), "subject", "html", "text", "to_email"
    ):
        for name in ("subject", "html", "text", "error"):
            setattr(message, name, erasure.text(getattr(message, name)))
        message.save(update_fields=["subject", "html", "text", "error"])
    ids = set(
        DeliveryEvent.objects.filter(
            Q(message__contact=contact) | Q(recipient__in=addresses)
        ).values_list("pk", flat=True)
    ) | set(
        erasure.matching(DeliveryEvent.objects.all(), "description", "url", "event_id").values_list(
            "pk", flat=True
        )
    )
    for event in DeliveryEvent.objects.filter(pk__in=ids):
        event_id = event.event_id
        for address in addresses:
            event_id = event_id.replace(address, erasure.email_token(address))
        event.event_id = event_id
        event.recipient = ""
        event.url = erasure.text(event.url)
        event.description = erasure.text(event.description)
        event.save(update_fields=["event_id", "recipient", "url", "description"])
    # The suppression list keeps only the hash: the address stays suppressed.
    for row in Suppression.objects.filter(Q(email_hash__in=hashes) | Q(email__in=addresses)):
        row.email = ""
        row.detail = erasure.text(row.detail)
        row.lift_note = erasure.text(row.lift_note)
        row.save(update_fields=["email", "detail", "lift_note"])
    for run in erasure.matching(StepRun.objects.filter(enrollment__contact=contact), "error"):
        run.error = erasure.text(run.error)
        run.save(update_fields=["error"])
    for enrollment in Enrollment.objects.filter(contact=contact):
        enrollment.state = erasure.json(enrollment.state)
        enrollment.exit_reason = erasure.text(enrollment.exit_reason)
        enrollment.save(update_fields=["state", "exit_reason"])
    for recipient in erasure.matching(BroadcastRecipient.objects.filter(contact=contact), "reason"):
        recipient.reason = erasure.text(recipient.reason)
        recipient.save(update_fields=["reason"])
    SurveyAnswer.objects.filter(contact=contact).update(comment="")
    for delivery in erasure.matching(
        WebhookDelivery.objects.all(), "payload", "last_error", "last_response"
    ):
        delivery.payload = erasure.json(delivery.payload)
        delivery.last_error = erasure.text(delivery.last_error)
        delivery.last_response = erasure.text(delivery.last_response)
        delivery.save(update_fields=["payload", "last_error", "last_response"])
