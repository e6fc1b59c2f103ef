"""Segment's tracking spec (identify, track, page, screen, alias, group) mapped onto
Keepers: identify upserts the contact with its traits, track/page/screen store events,
alias links ids, and Segment's e-commerce events create orders and refunds.

A batch is processed item by item for validation and identity, and in bulk for storage:
each bad item is reported by index and field while the good ones are kept."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction

from crm import clock
from crm.errors import KeepersError
from crm.models import Contact
from crm.services.contacts import (
    Identity,
    aliases_attach,
    contact_alias,
    contact_fields_clean,
    contact_upsert,
    email_normalize,
)
from crm.services.events import EventIn, events_ingest
from crm.services.orders import OrderIn, line_parse, order_refund, orders_place
from crm.services.parsing import (
    parse_currency,
    parse_datetime,
    parse_money,
    parse_object,
    parse_str,
)

MESSAGE_TYPES = {"identify", "track", "page", "screen", "alias", "group"}
# Traits with a home on the contact; every other trait goes to contact.attributes.
TRAIT_FIELDS = {
    "email": "email",
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
    "phone": "phone",
    "birthday": "birthday",
    "timezone": "timezone",
    "locale": "locale",
}
IGNORED_TRAITS = {"id", "userId", "name", "createdAt", "created_at"}


@dataclass
class ItemResult:
    index: int
    status: str  # "created", "duplicate", "ok" or "error"
    field: str | None = None
    message: str = ""
    code: str = ""

    def as_dict(self) -> dict:
        data: dict = {"index": self.index, "status": self.status}
        if self.status == "error":
            data.update(code=self.code, field=self.field, message=self.message)
        return data


@transaction.atomic
def segment_messages_ingest(
    messages: list, *, sent_at: object = None, source: str = "segment"
) -> list[ItemResult]:
    """Apply a batch of Segment messages in one transaction. Orders and refunds are keyed
    on their own ids (order_id, the refund's messageId), so a redelivered batch whose
    events are duplicates still completes anything a crashed first delivery left undone."""
    now = clock.now()
    results: list[ItemResult | None] = [None] * len(messages)
    events: list[tuple[int, EventIn, OrderIn | None]] = []
    for index, message in enumerate(messages):
        try:
            kind = _message_type(message)
            _check_size(message)
            if kind == "identify":
                with transaction.atomic():
                    identify_apply(message, source=source)
                results[index] = ItemResult(index, "ok")
            elif kind == "alias":
                previous = parse_str(message.get("previousId"), "previousId", required=True)
                user = parse_str(message.get("userId"), "userId", required=True)
                contact_alias(previous_id=previous, user_id=user, source=source)
                results[index] = ItemResult(index, "ok")
            elif kind == "group":
                results[index] = ItemResult(index, "ok")  # accounts are not modelled (yet)
            else:
                event = _event_from(message, kind, now=now, sent_at=sent_at, source=source)
                order = _order_from(event) if event.name == "Order Completed" else None
                if event.name == "Order Refunded":
                    parse_str(
                        event.properties.get("order_id"), "properties.order_id", required=True
                    )
                events.append((index, event, order))
        except KeepersError as error:
            results[index] = ItemResult(index, "error", error.field, error.message, error.code)

    stored = events_ingest([e for _, e, _ in events], source=source)
    orders = []
    for (index, event, order), (status, _pk) in zip(events, stored, strict=True):
        results[index] = ItemResult(index, status)
        if order is not None:
            orders.append(order)
        elif event.name == "Order Refunded":
            try:
                _refund_from(event)
            except KeepersError as error:
                results[index] = ItemResult(
                    index,
                    "error",
                    f"properties.{error.field or 'order_id'}",
                    error.message,
                    error.code,
                )
    orders_place(orders)
    return [r for r in results if r is not None]


def _message_type(message: object) -> str:
    if not isinstance(message, dict):
        raise KeepersError("Each message must be a JSON object.", field="type")
    kind = message.get("type")
    if kind not in MESSAGE_TYPES:
        raise KeepersError(
            f"Unknown message type {kind!r}; expected one of {', '.join(sorted(MESSAGE_TYPES))}.",
            field="type",
        )
    return kind


def _check_size(message: dict) -> None:
    size = len(json.dumps(message, separators=(",", ":"), default=str).encode())
    if size > settings.KEEPERS_TRACK_MAX_EVENT_BYTES:
        raise KeepersError(
            f"This message is {size} bytes; the limit is 32 KB per message.",
            field="message",
            code="message_too_large",
        )


def _identity(message: dict) -> Identity:
    traits = parse_object(message.get("traits"), "traits")
    context = parse_object(message.get("context"), "context")
    context_traits = parse_object(context.get("traits"), "context.traits")
    properties = parse_object(message.get("properties"), "properties")
    raw_email = traits.get("email") or context_traits.get("email") or properties.get("email")
    identity = Identity(
        email=email_normalize(raw_email, field_name="traits.email") if raw_email else None,
        external_id=parse_str(message.get("userId"), "userId") or None,
        anonymous_id=parse_str(message.get("anonymousId"), "anonymousId") or None,
    )
    if not (identity.email or identity.external_id or identity.anonymous_id):
        raise KeepersError(
            "A message needs a userId or an anonymousId.", field="userId", code="required"
        )
    return identity


def identify_apply(message: dict, *, source: str) -> Contact | None:
    identity = _identity(message)
    traits = parse_object(message.get("traits"), "traits")
    context = parse_object(message.get("context"), "context")
    fields: dict = {}
    attributes: dict = {}
    for key, value in traits.items():
        if key in TRAIT_FIELDS:
            fields[TRAIT_FIELDS[key]] = value
        elif key == "name" and isinstance(value, str) and "first_name" not in fields:
            first, _, last = value.strip().partition(" ")
            fields.setdefault("first_name", first)
            fields.setdefault("last_name", last)
        elif key not in IGNORED_TRAITS:
            attributes[key] = value
    if context.get("timezone") and "timezone" not in fields:
        fields["timezone"] = context["timezone"]
    if context.get("locale") and "locale" not in fields:
        fields["locale"] = context["locale"]
    if attributes:
        fields["attributes"] = attributes
    fields.pop("email", None)
    cleaned = contact_fields_clean(fields, prefix="traits.")
    if not identity.email and not identity.external_id:
        return None  # an anonymous visitor: their events are kept under the anonymous id
    contact, _created = contact_upsert(
        source=source, email=identity.email, external_id=identity.external_id, **cleaned
    )
    if identity.anonymous_id:
        aliases_attach({identity.anonymous_id: contact.pk})
    return contact


def _event_from(
    message: dict, kind: str, *, now: datetime, sent_at: object, source: str
) -> EventIn:
    identity = _identity(message)
    properties = parse_object(message.get("properties"), "properties")
    if kind == "track":
        name = parse_str(message.get("event"), "event", max_length=200, required=True)
    elif kind == "page":
        name = "Page Viewed"
        if message.get("name"):
            properties = {"name": message["name"], **properties}
    else:
        name = "Screen Viewed"
        if message.get("name"):
            properties = {"name": message["name"], **properties}
    return EventIn(
        name=name,
        identity=identity,
        properties=properties,
        context=parse_object(message.get("context"), "context"),
        occurred_at=_occurred_at(message, now=now, sent_at=sent_at),
        message_id=parse_str(message.get("messageId"), "messageId") or str(uuid.uuid4()),
        source=source,
    )


def _occurred_at(message: dict, *, now: datetime, sent_at: object) -> datetime:
    """Segment's rule: trust `timestamp`; otherwise correct the client's clock skew with
    originalTimestamp and sentAt."""
    if message.get("timestamp"):
        return parse_datetime(message["timestamp"], "timestamp")
    original = message.get("originalTimestamp")
    sent = message.get("sentAt") or sent_at
    if original and sent:
        return now - (
            parse_datetime(sent, "sentAt") - parse_datetime(original, "originalTimestamp")
        )
    if original:
        return parse_datetime(original, "originalTimestamp")
    return now


def _order_from(event: EventIn) -> OrderIn:
    """Segment's Order Completed: order_id, total (or revenue), currency, products."""
    props = event.properties
    if not (event.identity.email or event.identity.external_id):
        raise KeepersError(
            "Order Completed needs a userId or an email to know whose order it is.",
            field="userId",
            code="required",
        )
    currency = parse_currency(
        props.get("currency") or settings.KEEPERS_BASE_CURRENCY, "properties.currency"
    )
    products = props.get("products") or []
    if not isinstance(products, list):
        raise KeepersError("products must be a list.", field="properties.products")
    lines = [line_parse(p, f"properties.products[{n}].", currency) for n, p in enumerate(products)]
    raw_total = props.get("total", props.get("revenue"))
    if raw_total is None:
        total = sum((line["price"] * line["quantity"] for line in lines), start=parse_money(0, "x"))
    else:
        total = parse_money(raw_total, "properties.total")
    return OrderIn(
        external_id=parse_str(props.get("order_id"), "properties.order_id", required=True),
        identity=Identity(email=event.identity.email, external_id=event.identity.external_id),
        total=total,
        currency=currency,
        ordered_at=event.occurred_at,
        lines=lines,
        attributes={
            k: props[k]
            for k in (
                "discount",
                "coupon",
                "shipping",
                "tax",
                "affiliation",
                "checkout_id",
                "referral_code",
            )
            if k in props
        },
        source="segment",
    )


def _refund_from(event: EventIn) -> None:
    props = event.properties
    raw = props.get("total", props.get("revenue"))
    order_refund(
        order_external_id=str(props["order_id"]),
        amount=None if raw is None else parse_money(raw, "total", allow_zero=False),
        reason=str(props.get("reason", ""))[:500],
        refund_id=f"{event.source}:{event.message_id}",
        at=event.occurred_at,
    )
