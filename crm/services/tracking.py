"""Segment's tracking spec (identify, track, page, screen, alias, group) mapped onto
Keepers: identify upserts the contact with its traits, track/page/screen store events,
alias links ids, and Segment's e-commerce events create orders and refunds.

A batch is processed item by item for validation and identity, and in bulk for storage:
each bad item is reported by index and field while the good ones are kept."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from crm import clock
from crm.errors import KeepersError
from crm.models import Contact, Order
from crm.services.contacts import (
    Identity,
    aliases_attach,
    contact_alias,
    contact_fields_clean,
    contact_upsert,
    email_normalize,
)
from crm.services.events import EventIn, events_ingest
from crm.services.orders import (
    SPEC_ATTRIBUTES,
    OrderIn,
    line_parse,
    order_refund,
    orders_place,
)
from crm.services.parsing import (
    MAX_MONEY,
    check_json,
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


@dataclass
class RefundIn:
    order_id: str
    amount: Decimal | None


@transaction.atomic
def segment_messages_ingest(
    messages: list, *, sent_at: object = None, source: str = "segment"
) -> list[ItemResult]:
    """Apply a batch of Segment messages in one transaction. Orders and refunds are keyed
    on their own ids (order_id, the refund's messageId), so a redelivered batch whose
    events are duplicates still completes anything a crashed first delivery left undone.
    Orders are placed before refunds are applied, so an order and its refund may arrive in
    the same batch."""
    now = clock.now()
    results: list[ItemResult | None] = [None] * len(messages)
    events: list[tuple[int, EventIn, OrderIn | RefundIn | None]] = []
    for index, message in enumerate(messages):
        try:
            kind = _message_type(message)
            _check_storable(message)
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
                # Validate orders and refunds before the event is stored, so a bad one
                # leaves nothing half-written behind.
                commerce: OrderIn | RefundIn | None = None
                if event.name == "Order Completed":
                    commerce = _order_from(event)
                elif event.name == "Order Refunded":
                    commerce = _refund_parse(event)
                events.append((index, event, commerce))
        except KeepersError as error:
            results[index] = ItemResult(index, "error", error.field, error.message, error.code)

    events = _without_known_orders(events, results)
    stored = events_ingest([e for _, e, _ in events], source=source)
    for (index, _event, _commerce), (status, _pk) in zip(events, stored, strict=True):
        results[index] = ItemResult(index, status)
    orders_place([c for _, _, c in events if isinstance(c, OrderIn)])
    for index, event, commerce in events:
        if isinstance(commerce, RefundIn):
            try:
                _refund_apply(commerce, event)
            except KeepersError as error:
                results[index] = ItemResult(
                    index, "error", _refund_field(error.field), error.message, error.code
                )
    return [r for r in results if r is not None]


def _without_known_orders(
    events: list[tuple[int, EventIn, OrderIn | RefundIn | None]], results: list
) -> list[tuple[int, EventIn, OrderIn | RefundIn | None]]:
    """An "Order Completed" for an order already stored (the REST API, an import, a store
    connector, or this very event delivered before, or earlier in the batch under another
    messageId) is a duplicate: the order has its event, and a second one would start its
    journeys twice."""
    order_ids = {c.external_id for _, _, c in events if isinstance(c, OrderIn)}
    if not order_ids:
        return events
    known = set(
        Order.objects.filter(external_id__in=order_ids).values_list("external_id", flat=True)
    )
    kept = []
    for index, event, commerce in events:
        if isinstance(commerce, OrderIn):
            if commerce.external_id in known:
                results[index] = ItemResult(index, "duplicate")
                continue
            known.add(commerce.external_id)  # the batch's first event of an order is its own
        kept.append((index, event, commerce))
    return kept


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


def _check_storable(message: dict) -> None:
    """Refuse a message over Segment's 32 KB, or holding what PostgreSQL cannot store (NaN
    and Infinity are not JSON; text and jsonb cannot hold a NUL character or a lone
    surrogate; nesting is bounded)."""
    check_json(message)
    try:
        dumped = json.dumps(message, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise KeepersError(
            "NaN and Infinity are not JSON numbers; send null or a string.",
            field=_path_of(message, lambda v: isinstance(v, float) and not math.isfinite(v)),
        ) from None
    if len(dumped.encode()) > settings.KEEPERS_TRACK_MAX_EVENT_BYTES:
        raise KeepersError(
            f"This message is {len(dumped.encode())} bytes; the limit is 32 KB per message.",
            field="message",
            code="message_too_large",
        )
    if "\\u0000" in dumped:  # cheap test first (an escaped backslash before u0000 matches too)
        field = _path_of(message, lambda v: isinstance(v, str) and "\x00" in v)
        if field:
            raise KeepersError("Text may not contain the NUL character (\\u0000).", field=field)


def _path_of(value: object, bad, path: str = "") -> str:
    """The dotted path of the first value (or key) in `value` for which `bad` is true."""
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if bad(key):
                return here
            found = _path_of(item, bad, here)
            if found:
                return found
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found = _path_of(item, bad, f"{path}[{n}]")
            if found:
                return found
    elif bad(value):
        return path
    return ""


def _identity(message: dict) -> Identity:
    traits = parse_object(message.get("traits"), "traits")
    context = parse_object(message.get("context"), "context")
    context_traits = parse_object(context.get("traits"), "context.traits")
    properties = parse_object(message.get("properties"), "properties")
    raw_email, email_field = next(
        (
            (found.get("email"), name)
            for found, name in (
                (traits, "traits.email"),
                (context_traits, "context.traits.email"),
                (properties, "properties.email"),
            )
            if found.get("email")
        ),
        (None, ""),
    )
    identity = Identity(
        email=email_normalize(raw_email, field_name=email_field) if raw_email else None,
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
    if attributes:
        fields["attributes"] = attributes
    fields.pop("email", None)
    cleaned = contact_fields_clean(fields, prefix="traits.")
    # The browser's or device's own time zone and locale fill gaps in the traits; being
    # metadata the person did not type, an unusable one is skipped rather than refused.
    for name in ("timezone", "locale"):
        if context.get(name) and name not in cleaned:
            with contextlib.suppress(KeepersError):
                cleaned.update(contact_fields_clean({name: context[name]}, prefix="context."))
    if not identity.email and not identity.external_id:
        return None  # an anonymous visitor: their events are kept under the anonymous id
    # Only the ids this message gives: passing None would erase the one it did not send.
    ids = {"email": identity.email, "external_id": identity.external_id}
    contact, _created = contact_upsert(
        source=source, **{k: v for k, v in ids.items() if v}, **cleaned
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
        message_id=parse_str(message.get("messageId"), "messageId") or _message_id(message),
        source=source,
    )


def _message_id(message: dict) -> str:
    """A message without a messageId (hand-written integrations) that says when it happened
    is identified by its content, so a retried delivery is still stored (and refunded)
    once; one that carries no time at all cannot be told from a second real occurrence,
    so it gets a random id."""
    if not (message.get("timestamp") or message.get("originalTimestamp")):
        return str(uuid.uuid4())
    content = {k: v for k, v in message.items() if k not in ("sentAt", "receivedAt")}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return f"sha256:{digest}"


def _occurred_at(message: dict, *, now: datetime, sent_at: object) -> datetime:
    """Segment's rule: trust `timestamp`; otherwise correct the client's clock skew with
    originalTimestamp and sentAt."""
    field = "timestamp"
    try:
        if message.get("timestamp"):
            return parse_datetime(message["timestamp"], "timestamp").astimezone(UTC)
        original = message.get("originalTimestamp")
        sent = message.get("sentAt") or sent_at
        field = "originalTimestamp"
        if original and sent:
            field = "sentAt"
            skew = parse_datetime(sent, "sentAt") - parse_datetime(original, "originalTimestamp")
            return (now - skew).astimezone(UTC)
        if original:
            return parse_datetime(original, "originalTimestamp").astimezone(UTC)
        return now
    except OverflowError:
        raise KeepersError("This date-time is out of range.", field=field) from None


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
    raw_total = _first_given(props, "total", "revenue")
    if raw_total is None:
        total = sum((line["price"] * line["quantity"] for line in lines), start=Decimal(0))
        if total >= MAX_MONEY:
            raise KeepersError(
                "The order's total (the sum of its products) is too large.",
                field="properties.total",
            )
    else:
        total = parse_money(raw_total, "properties.total")
    return OrderIn(
        external_id=parse_str(props.get("order_id"), "properties.order_id", required=True),
        identity=Identity(email=event.identity.email, external_id=event.identity.external_id),
        total=total,
        currency=currency,
        ordered_at=event.occurred_at,
        lines=lines,
        attributes={k: props[k] for k in SPEC_ATTRIBUTES if k in props},
        source="segment",
        event_recorded=True,  # this very event is the order's "Order Completed"
    )


def _first_given(props: dict, *names: str) -> object:
    """The first of `names` present with a value (Segment sends `total`, older code
    `revenue`; an explicit null means "not given")."""
    return next((props[n] for n in names if props.get(n) is not None), None)


def _refund_parse(event: EventIn) -> RefundIn:
    """Segment's Order Refunded: order_id, and total when only part is refunded."""
    props = event.properties
    raw = _first_given(props, "total", "revenue")
    return RefundIn(
        order_id=parse_str(props.get("order_id"), "properties.order_id", required=True),
        amount=None if raw is None else parse_money(raw, "properties.total", allow_zero=False),
    )


def _refund_apply(refund: RefundIn, event: EventIn) -> None:
    """Idempotent on the message: a redelivered refund is not applied twice; a second full
    refund (no total) of an order already fully refunded is a no-op, not an error."""
    try:
        order_refund(  # its own savepoint: a refused refund leaves the batch intact
            order_external_id=refund.order_id,
            amount=refund.amount,
            reason=str(event.properties.get("reason", ""))[:500],
            refund_id=f"{event.source}:{event.message_id}",
            at=event.occurred_at,
            event_recorded=True,  # this very event is the refund's "Order Refunded"
        )
    except KeepersError as error:
        if refund.amount is None and error.code == "conflict":
            return  # nothing left to refund: the order is already refunded in full
        raise


def _refund_field(field: str | None) -> str:
    """order_refund's names for Segment's: order_id, and `amount` is `total`."""
    return {"amount": "properties.total"}.get(field or "", "properties.order_id")
