"""The crm event bus: an explicit, in-process publish/subscribe for business events.

`crm` publishes what happened ("contact created", "event ingested", "order placed",
"order refunded", "stage changed", "segment entered", "segment exited"); later apps subscribe in their AppConfig.ready(). The
dependency points one way: crm never imports its subscribers.

Handlers run after the surrounding transaction commits (never for a rolled-back write), in
publication order. A handler that raises is logged and does not stop the others: a
subscriber's bug must not lose the write that was already committed. Handlers should be
quick (enqueue a task, mark a row); heavy work belongs in Celery.
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
_subscribers: dict[type, list[Handler]] = defaultdict(list)


def subscribe(message_type: type, handler: Handler) -> None:
    if handler not in _subscribers[message_type]:
        _subscribers[message_type].append(handler)


def unsubscribe(message_type: type, handler: Handler) -> None:
    if handler in _subscribers[message_type]:
        _subscribers[message_type].remove(handler)


def has_subscribers(message_type: type) -> bool:
    return bool(_subscribers.get(message_type))


def publish(message: object) -> None:
    """Deliver `message` to its subscribers once the current transaction commits."""
    publish_many([message])


def publish_many(messages: list) -> None:
    wanted = [m for m in messages if _subscribers.get(type(m))]
    if wanted:
        transaction.on_commit(lambda: _deliver(wanted))


def _deliver(messages: list) -> None:
    for message in messages:
        for handler in list(_subscribers.get(type(message), ())):
            try:
                handler(message)
            except Exception:
                log.exception("bus handler %r failed for %r", handler, message)
