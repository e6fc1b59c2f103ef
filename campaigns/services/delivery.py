"""Delivery tracking: the ESP's events (through Anymail's tracking webhooks) recorded against
the Message they are about, and the suppression list they feed.

ESPs deliver webhooks at least once, in any order, and retry for days when they do not get
a 2xx. So recording is idempotent and monotonic:

- each event is stored once per (esp_name, event_id), a constraint decides, and a
  duplicate changes nothing at all;
- the message's timestamps only move earlier (the first open stays first) and its
  delivery_status only moves up (complained > bounced/rejected > delivered > deferred);
- an event for a message Keepers does not know is stored with message NULL and answered
  200 like any other; what the ESP sent never makes this raise. (A database error does
  raise: the ESP gets a 5xx, retries later, and nothing is lost.)

An address is suppressed on a hard bounce, a complaint, an unsubscribe at the ESP, or
KEEPERS_SOFT_BOUNCE_LIMIT soft bounces in a row; sending checks the list for every
message (campaigns.services.sending.message_skip_reason)."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from campaigns.models import DeliveryEvent, Message, Suppression
from campaigns.services.recovery import message_confirm
from crm import clock
from crm.errors import KeepersError
from crm.selectors import consent_current
from crm.services.consent import consent_record
from crm.services.contacts import Identity
from crm.services.events import EventIn, events_ingest
from crm.services.privacy import address_hash

log = logging.getLogger(__name__)

# delivery_status only moves up this ladder; bounced and rejected share a rung, so neither
# replaces the other.
STATUS_RANK = {
    EventType.DEFERRED: 1,
    EventType.DELIVERED: 2,
    EventType.BOUNCED: 3,
    EventType.REJECTED: 3,
    EventType.COMPLAINED: 4,
}
TIMESTAMP_FIELDS = {
    EventType.DELIVERED: "delivered_at",
    EventType.OPENED: "opened_at",
    EventType.CLICKED: "clicked_at",
    EventType.BOUNCED: "bounced_at",
    EventType.COMPLAINED: "complained_at",
    EventType.UNSUBSCRIBED: "unsubscribed_at",
}
ENGAGEMENT_EVENTS = {EventType.OPENED: "Email Opened", EventType.CLICKED: "Email Clicked"}

# Anymail reports some ESPs' soft bounces as "bounced", with the same reject_reason
# ("bounced") as a hard one; only the ESP's own payload tells them apart. Mailgun, SendGrid,
# SparkPost and others already arrive as "deferred".
_BREVO_SOFT = {"soft_bounce"}
_SOFT_BOUNCE = {
    # SES: bounceType Permanent is hard; Transient and Undetermined are not.
    "Amazon SES": lambda raw: (raw.get("bounce") or {}).get("bounceType") != "Permanent",
    "Postmark": lambda raw: raw.get("Type") in ("SoftBounce", "VirusNotification"),
    "Brevo": lambda raw: raw.get("event") in _BREVO_SOFT,
    "SendinBlue": lambda raw: raw.get("event") in _BREVO_SOFT,
    "Mailjet": lambda raw: raw.get("hard_bounce") is False,
}

# A rejection (the ESP refused to send) suppresses only when the ESP says the address itself
# is the problem; "blocked" (policy, content) and "other" do not.
_REJECTION_SUPPRESSES = {
    RejectReason.INVALID: Suppression.Reason.HARD_BOUNCE,
    RejectReason.BOUNCED: Suppression.Reason.HARD_BOUNCE,
    RejectReason.SPAM: Suppression.Reason.COMPLAINT,
    RejectReason.UNSUBSCRIBED: Suppression.Reason.UNSUBSCRIBED,
}


@transaction.atomic
def delivery_event_record(*, event: AnymailTrackingEvent, esp_name: str) -> DeliveryEvent | None:
    """Record one tracking event from the ESP. Returns the stored row, or None when the
    same event was recorded before (then nothing else happens either).

    The DeliveryEvent insert comes first, in a savepoint: the unique (esp_name, event_id)
    constraint decides whether this is a redelivery, so two concurrent deliveries of one
    event cannot both act. Message updates are conditional UPDATEs (earlier timestamp,
    higher status), so events may arrive in any order and concurrently."""
    now = clock.now()
    recipient = _address(event.recipient)
    esp_message_id = str(event.message_id or "").strip()
    message = _message_for(esp_message_id, recipient) or _message_from_metadata(event, recipient)
    if message is not None and not recipient:
        recipient = message.to_email.strip().lower()
    occurred_at = _aware(event.timestamp) or now
    event_type, soft_bounce = _event_type(event, esp_name)
    description = " — ".join(
        str(part).strip() for part in (event.description, event.mta_response) if part
    ).strip(" —")
    row = DeliveryEvent(
        message=message,
        esp_name=esp_name[:40],
        event_id=_event_key(event, esp_name=esp_name, recipient=recipient),
        event_type=event_type[:20],
        esp_message_id=esp_message_id[:255],
        recipient=recipient[:254],
        occurred_at=occurred_at,
        received_at=now,
        url=(event.click_url or "")[:2000],
        reject_reason=(event.reject_reason or "")[:20],
        description=f"soft bounce: {description}" if soft_bounce else description,
    )
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        log.debug("%s event %s was recorded before", esp_name, row.event_id)
        return None

    if message is None:
        log.info(
            "%s %s event for unknown message %r (%s) stored without a message",
            esp_name,
            event_type,
            esp_message_id,
            recipient or "no recipient",
        )
    else:
        if message.status in (Message.Status.SENDING, Message.Status.UNCONFIRMED):
            _confirm(message, event_type=event_type, esp_message_id=esp_message_id, at=occurred_at)
        _message_update(message, event_type=event_type, at=occurred_at)
        if event_type in ENGAGEMENT_EVENTS:
            _engagement_record(message, row)
        if event_type in (EventType.COMPLAINED, EventType.UNSUBSCRIBED):
            _consent_withdraw(message, source=f"{esp_name} {event_type}")

    reason = _suppression_reason(row)
    if reason and recipient:
        suppression_create(
            email=recipient,
            reason=reason,
            source=f"{esp_name} webhook",
            detail=row.description,
            at=now,
        )
    return row


def suppression_create(
    *, email: str, reason: str, source: str = "", detail: str = "", at: datetime | None = None
) -> tuple[Suppression, bool]:
    """Suppress an address (lower-cased). An address already suppressed keeps its first
    reason, and the call returns (existing, False): the partial unique constraint (one
    active row per email) decides, so concurrent calls cannot both insert."""
    email = email.strip().lower()
    if reason not in Suppression.Reason.values:
        raise KeepersError(
            f"Reason must be one of {', '.join(Suppression.Reason.values)}.", field="reason"
        )
    try:
        with transaction.atomic():
            suppression = Suppression.objects.create(
                email=email,
                email_hash=address_hash(email),
                reason=reason,
                source=source[:100],
                detail=detail,
                created_at=at or clock.now(),
            )
    except IntegrityError:
        return Suppression.objects.get(
            email_hash=address_hash(email), lifted_at__isnull=True
        ), False
    return suppression, True


@transaction.atomic
def suppression_lift(*, suppression: Suppression, user: User | None, note: str) -> Suppression:
    """Let an address receive mail again. The row stays, with who lifted it and why; a
    later bounce or complaint suppresses the address anew."""
    note = (note or "").strip()
    if not note:
        raise KeepersError("Say why the suppression is lifted.", field="note")
    lifted = Suppression.objects.filter(pk=suppression.pk, lifted_at__isnull=True).update(
        lifted_at=clock.now(), lifted_by=user, lift_note=note
    )
    if not lifted:
        raise KeepersError("This suppression was already lifted.", code="conflict", status_code=409)
    suppression.refresh_from_db()
    return suppression


def _address(raw: object) -> str:
    return raw.strip().lower() if isinstance(raw, str) else ""


def _aware(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return timezone.make_aware(value, UTC) if timezone.is_naive(value) else value


def _event_type(event: AnymailTrackingEvent, esp_name: str) -> tuple[str, bool]:
    """Anymail's event type, except that a soft bounce is recorded as "deferred": in
    Keepers "bounced" means the address is gone."""
    event_type = str(event.event_type or EventType.UNKNOWN)
    if event_type == EventType.BOUNCED:
        check = _SOFT_BOUNCE.get(esp_name)
        raw = event.esp_event if isinstance(event.esp_event, dict) else {}
        if check is not None and check(raw):
            return EventType.DEFERRED, True
    return event_type, False


def _event_key(event: AnymailTrackingEvent, *, esp_name: str, recipient: str) -> str:
    if event.event_id:
        key = str(event.event_id)
        if esp_name == "Amazon SES":
            # One SNS notification (one MessageId) covers every recipient of a bounce or
            # complaint, and Anymail makes an event per recipient.
            key = f"{key}:{recipient}"
        return key[:255]
    # Brevo, and Postmark for deliveries, opens and clicks, give no event id: derive one
    # from what identifies the event, so a redelivered payload maps to the same key.
    timestamp = _aware(event.timestamp)
    parts = [
        str(event.message_id or ""),
        str(event.event_type or ""),
        timestamp.isoformat() if timestamp else "",
        recipient,
        event.click_url or "",
    ]
    return "derived:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _message_for(esp_message_id: str, recipient: str) -> Message | None:
    if not esp_message_id:
        return None
    # Mailgun and Brevo ids come with or without angle brackets depending on the event.
    bare = esp_message_id.strip("<>")
    candidates = list(
        Message.objects.filter(esp_message_id__in={esp_message_id, bare, f"<{bare}>"})
        .select_related("contact")
        .order_by("pk")[:20]
    )
    for message in candidates:
        if message.to_email.strip().lower() == recipient:
            return message
    return candidates[0] if candidates else None


def _message_from_metadata(event: AnymailTrackingEvent, recipient: str) -> Message | None:
    """The message named by the Anymail metadata Keepers sends with every email
    (campaigns.services.sending.email_build): how an event finds a message whose ESP id
    was never recorded (a crash between the ESP's acceptance and the mark). Only a message
    not marked sent yet, and only when the recipient matches."""
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    raw = str(metadata.get("message_id") or "").strip()
    if not raw.isdigit() or len(raw) > 18:
        return None
    message = (
        Message.objects.filter(
            pk=int(raw), status__in=[Message.Status.SENDING, Message.Status.UNCONFIRMED]
        )
        .select_related("contact")
        .first()
    )
    if message is None or (recipient and message.to_email.strip().lower() != recipient):
        return None
    return message


# events that say the ESP never sent the message; any other known event says it did
_NOT_SENT = {EventType.REJECTED, EventType.FAILED}


def _confirm(message: Message, *, event_type: str, esp_message_id: str, at: datetime) -> None:
    if event_type == EventType.UNKNOWN:
        return
    if message_confirm(
        message=message,
        esp_message_id=esp_message_id[:255],
        at=at,
        accepted=event_type not in _NOT_SENT,
    ):
        log.info("message %s confirmed by a %s event", message.pk, event_type)


def _message_update(message: Message, *, event_type: str, at: datetime) -> None:
    """Conditional UPDATEs, so the row lock orders concurrent events and a late-arriving
    event cannot move a timestamp later or the status down."""
    field = TIMESTAMP_FIELDS.get(event_type)
    if field:
        Message.objects.filter(pk=message.pk).filter(
            Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__gt": at})
        ).update(**{field: at})
    rank = STATUS_RANK.get(event_type)
    if rank:
        lower = ["", *(status for status, r in STATUS_RANK.items() if r < rank)]
        Message.objects.filter(pk=message.pk, delivery_status__in=lower).update(
            delivery_status=event_type
        )


def _engagement_record(message: Message, row: DeliveryEvent) -> None:
    """Opens and clicks become crm events for the contact (they feed the `unengaged`
    stage and segment rules). Keyed on the delivery event, so crm stores each once."""
    contact = message.contact
    properties = {
        "message_id": message.pk,
        "campaign_id": message.campaign_id,
        "step_id": message.step_id,
    }
    if row.url:
        properties["url"] = row.url
    # The message's contact, identified as crm knows them (the recipient address could
    # have changed since, and would then create a second contact).
    identity = Identity(
        email=contact.email or row.recipient or None, external_id=contact.external_id or None
    )
    try:
        with transaction.atomic():
            events_ingest(
                [
                    EventIn(
                        name=ENGAGEMENT_EVENTS[row.event_type],
                        identity=identity,
                        properties=properties,
                        occurred_at=row.occurred_at,
                        message_id=f"{row.esp_name}:{row.event_id}"[:255],
                        source="esp",
                    )
                ],
                source="esp",
            )
    except KeepersError as error:  # the delivery event stays recorded; the ESP gets a 200
        log.warning("engagement event for message %s not recorded: %s", message.pk, error)


def _consent_withdraw(message: Message, *, source: str) -> None:
    contact = message.contact
    if consent_current(contact=contact, channel="email", topic="all") == "withdrawn":
        return
    try:
        with transaction.atomic():
            consent_record(contact=contact, status="withdrawn", source=source)
    except KeepersError as error:
        log.warning("consent withdrawal for contact %s not recorded: %s", contact.pk, error)


def _suppression_reason(row: DeliveryEvent) -> str | None:
    if row.event_type == EventType.BOUNCED:
        return Suppression.Reason.HARD_BOUNCE
    if row.event_type == EventType.COMPLAINED:
        return Suppression.Reason.COMPLAINT
    if row.event_type == EventType.UNSUBSCRIBED:
        return Suppression.Reason.UNSUBSCRIBED
    if row.event_type == EventType.REJECTED:
        return _REJECTION_SUPPRESSES.get(row.reject_reason)
    if row.event_type == EventType.DEFERRED and row.recipient:
        limit = settings.KEEPERS_SOFT_BOUNCE_LIMIT
        if _soft_bounces_in_a_row(row.recipient) >= limit:
            return Suppression.Reason.SOFT_BOUNCES
    return None


def _soft_bounces_in_a_row(email: str) -> int:
    """Messages to this address that soft-bounced since its last delivery. Counted per
    message: an ESP reports each retry of one message (Mailgun, every attempt), and three
    retries of one greylisted message are not three failures of the address."""
    events = DeliveryEvent.objects.filter(recipient=email)
    last_delivery = events.filter(event_type=EventType.DELIVERED).aggregate(at=Max("occurred_at"))[
        "at"
    ]
    deferrals = events.filter(event_type=EventType.DEFERRED)
    if last_delivery is not None:
        deferrals = deferrals.filter(occurred_at__gt=last_delivery)
    return deferrals.values("esp_message_id").distinct().count()
