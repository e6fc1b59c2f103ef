"""What loyalty does when crm announces something on its bus (subscribed in
LoyaltyConfig.ready()): each handler only enqueues a task, so the committed write that
published the message is never slowed down or undone by loyalty's work.

Placed orders are taken a delivery at a time: a bulk placement (the batch API, a Segment
batch, the demo's seed, a store connector's sync) becomes one set-based task per chunk of
orders, never a task per order, so a large import leaves no backlog in front of the
periodic tasks."""

from __future__ import annotations

from crm.extend import bus
from loyalty.services.points import bonus_event_names
from loyalty.tasks import event_bonus_task, order_refunded_task, orders_placed_task

CHUNK = 500  # orders per task: what loyalty.services.orders handles in one transaction


def orders_placed(messages: list[bus.OrderPlaced]) -> None:
    ids = [message.order_id for message in messages]
    for start in range(0, len(ids), CHUNK):
        orders_placed_task.delay(ids[start : start + CHUNK])


def order_refunded(message: bus.OrderRefunded) -> None:
    order_refunded_task.delay(message.refund_id)


def event_ingested(message: bus.EventIngested) -> None:
    if message.contact_id is not None and message.name in bonus_event_names():
        event_bonus_task.delay(message.event_id, message.contact_id, message.name)


def subscribe() -> None:
    bus.subscribe_batch(bus.OrderPlaced, orders_placed)
    bus.subscribe(bus.OrderRefunded, order_refunded)
    bus.subscribe(bus.EventIngested, event_ingested)
