"""What loyalty does when crm announces something on its bus (subscribed in
LoyaltyConfig.ready()): each handler only enqueues a task, so the committed write that
published the message is never slowed down or undone by loyalty's work."""

from __future__ import annotations

from crm.extend import bus
from loyalty.services.points import bonus_event_names
from loyalty.tasks import event_bonus_task, order_placed_task, order_refunded_task


def order_placed(message: bus.OrderPlaced) -> None:
    order_placed_task.delay(message.order_id)


def order_refunded(message: bus.OrderRefunded) -> None:
    order_refunded_task.delay(message.refund_id)


def event_ingested(message: bus.EventIngested) -> None:
    if message.contact_id is not None and message.name in bonus_event_names():
        event_bonus_task.delay(message.event_id, message.contact_id, message.name)


def subscribe() -> None:
    bus.subscribe(bus.OrderPlaced, order_placed)
    bus.subscribe(bus.OrderRefunded, order_refunded)
    bus.subscribe(bus.EventIngested, event_ingested)
