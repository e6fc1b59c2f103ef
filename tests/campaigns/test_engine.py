"""The engine in-process (eager tasks): triggers, waits, conditions, goals, holdout,
versions, failures — with time moved by time-machine."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail

from campaigns.models import Enrollment, Message, StepRun
from tests.campaigns.conftest import T0, sent_to, shopper, track

pytestmark = pytest.mark.django_db


def test_abandoned_cart_escalates_only_for_those_who_do_not_buy(abandoned_cart, run):
    with time_machine.travel(T0, tick=False) as clock:
        shopper("buyer@example.com")
        shopper("waiter@example.com")
        shopper("nobuy@example.com")
        for email in ("buyer@example.com", "waiter@example.com", "nobuy@example.com"):
            track(
                email,
                "Checkout Started",
                T0,
                f"co-{email}",
                cart_id=f"cart-{email}",
                products=[{"product_id": "SKU-1", "name": "Kettle", "price": 59}],
            )
        clock.shift(timedelta(seconds=10))
        run()
        assert Enrollment.objects.count() == 3
        assert mail.outbox == []
        clock.shift(timedelta(hours=1, minutes=1))
        run()
        assert len(mail.outbox) == 3
        assert "Kettle" in mail.outbox[0].alternatives[0][0]
        # the buyer buys this cart after the first reminder: the goal ends the sequence
        track(
            "buyer@example.com",
            "Order Completed",
            T0 + timedelta(hours=2),
            "buy-1",
            order_id="o-1",
            cart_id="cart-buyer@example.com",
            total=59,
        )
        # the waiter buys without the same cart id (another cart): the sequence goes on,
        # but the condition sees an order since enrollment and stops before the free shipping
        track(
            "waiter@example.com",
            "Order Completed",
            T0 + timedelta(hours=3),
            "buy-2",
            order_id="o-2",
            cart_id="other-cart",
            total=20,
        )
        clock.shift(timedelta(days=1, hours=1))
        run()
        clock.shift(timedelta(days=2, hours=1))
        run()
    assert sent_to("buyer@example.com") == ["You left something behind, Sam"]
    assert sent_to("waiter@example.com") == ["You left something behind, Sam"]
    assert sent_to("nobuy@example.com") == [
        "You left something behind, Sam",
        "Free shipping on your cart",
        "10% off your cart",
    ]
    statuses = dict(Enrollment.objects.values_list("contact__email", "status"))
    assert statuses == {
        "buyer@example.com": "exited_goal",
        "waiter@example.com": "completed",
        "nobuy@example.com": "completed",
    }
    history = list(
        StepRun.objects.filter(enrollment__contact__email="nobuy@example.com").values_list(
            "step_id", "decision"
        )
    )
    assert [s for s, _ in history] == [
        "wait-1h",
        "reminder",
        "wait-1d",
        "bought-1",
        "free-shipping",
        "wait-2d",
        "bought-2",
        "discount",
    ]


def test_running_the_same_cycle_twice_sends_nothing_twice(abandoned_cart, run):
    with time_machine.travel(T0, tick=False) as clock:
        shopper("twice@example.com")
        track("twice@example.com", "Checkout Started", T0, "co-1", cart_id="c1")
        clock.shift(timedelta(seconds=10))
        run()
        clock.shift(timedelta(hours=2))
        run()
        run()
        from campaigns.services.engine import enrollments_advance

        enrollments_advance(ids=list(Enrollment.objects.values_list("pk", flat=True)))
    assert len(mail.outbox) == 1
    assert Message.objects.count() == 1
