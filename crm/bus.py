"""The crm event bus: an explicit, in-process publish/subscribe for business events.

`crm` publishes what happened ("contact created", "event ingested", "order placed",
"order refunded", "stage changed", "segment entered", "segment exited"); later apps subscribe in their AppConfig.ready(). The
dependency points one way: crm never imports its subscribers.

Handlers run after the surrounding transaction commits (never for a rolled-back write), in
publication order. A handler that raises is logged and does not stop the others: a
subscriber's bug must not lose the write that was already committed. Handlers should be
quick (enqueue a task, mark a row); heavy work belongs in Celery.

A batch handler (`subscribe_batch`) is called once per delivery with every message of its
type that one `publish_many` published, in publication order: a bulk placement of 1,000
orders is one call, so the subscriber can hand the whole batch to one set-based task
instead of queueing a task per message.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContactCreated:
    contact_id: int
    source: str


@dataclass(frozen=True)
class EventIngested:
    event_id: int
    contact_id: int | None
    name: str
    occurred_at: datetime


@dataclass(frozen=True)
class OrderPlaced:
    order_id: int
    contact_id: int


@dataclass(frozen=True)
class OrderRefunded:
    order_id: int
    contact_id: int
    refund_id: int


@dataclass(frozen=True)
class StageChanged:
    contact_id: int
    from_stage: str
    to_stage: str
    at: datetime
    reason: str


@dataclass(frozen=True)
class SegmentEntered:
    segment_id: int
    contact_id: int
    at: datetime


@dataclass(frozen=True)
class SegmentExited:
    segment_id: int
    contact_id: int
    at: datetime


Handler = Callable[[object], None]
BatchHandler = Callable[[list], None]
_subscribers: dict[type, list[Handler]] = defaultdict(list)
_batch_subscribers: dict[type, list[BatchHandler]] = defaultdict(list)


def subscribe(message_type: type, handler: Handler) -> None:
    if handler not in _subscribers[message_type]:
        _subscribers[message_type].append(handler)


def subscribe_batch(message_type: type, handler: BatchHandler) -> None:
    """`handler(messages)` once per delivery, with all of that delivery's messages of
    this type (one for `publish`, the batch for `publish_many`)."""
    if handler not in _batch_subscribers[message_type]:
        _batch_subscribers[message_type].append(handler)


def unsubscribe(message_type: type, handler: Handler | BatchHandler) -> None:
    for registry in (_subscribers, _batch_subscribers):
        if handler in registry[message_type]:
            registry[message_type].remove(handler)


def has_subscribers(message_type: type) -> bool:
    return bool(_subscribers.get(message_type) or _batch_subscribers.get(message_type))


def publish(message: object) -> None:
    """Deliver `message` to its subscribers once the current transaction commits."""
    publish_many([message])


def publish_many(messages: list) -> None:
    wanted = [m for m in messages if has_subscribers(type(m))]
    if wanted:
        transaction.on_commit(lambda: _deliver(wanted))


def _deliver(messages: list) -> None:
    by_type: dict[type, list] = defaultdict(list)
    for message in messages:
        by_type[type(message)].append(message)
        for handler in list(_subscribers.get(type(message), ())):
            try:
                handler(message)
            except Exception:
                log.exception("bus handler %r failed for %r", handler, message)
    for message_type, batch in by_type.items():
        for handler in list(_batch_subscribers.get(message_type, ())):
            try:
                handler(batch)
            except Exception:
                log.exception("bus handler %r failed for %d %s", handler, len(batch), message_type)
