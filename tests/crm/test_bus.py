"""The crm bus: after-commit delivery; a batch subscriber gets one call per delivery with
all of its messages, so a bulk write can become one task instead of one per message."""

import logging

import pytest

from crm import bus

pytestmark = pytest.mark.django_db


def test_a_batch_subscriber_gets_each_delivery_in_one_call(
    django_capture_on_commit_callbacks, caplog
):
    batches, singles = [], []

    def broken(_messages):
        raise RuntimeError("a subscriber's bug")

    bus.subscribe_batch(bus.OrderPlaced, broken)
    bus.subscribe_batch(bus.OrderPlaced, batches.append)
    bus.subscribe(bus.OrderPlaced, singles.append)
    try:
        with caplog.at_level(logging.ERROR), django_capture_on_commit_callbacks(execute=True):
            bus.publish_many([bus.OrderPlaced(order_id=n, contact_id=n) for n in (1, 2, 3)])
            bus.publish(bus.OrderPlaced(order_id=4, contact_id=4))
            bus.publish(bus.StageChanged(1, "a", "b", None, "x"))  # another type: not theirs
    finally:
        for handler in (broken, batches.append, singles.append):
            bus.unsubscribe(bus.OrderPlaced, handler)

    assert [[m.order_id for m in batch] for batch in batches] == [[1, 2, 3], [4]]
    assert [m.order_id for m in singles] == [1, 2, 3, 4]
    assert len([r for r in caplog.records if "bus handler" in r.getMessage()]) == 2
