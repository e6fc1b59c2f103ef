"""The journey builder's counts per node (selectors.step_counts): every figure for the
treatment and the holdout, in four grouped queries whatever the number of steps or
enrolments; the admin's counts endpoint serves them."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from campaigns.models import Conversion, Enrollment, Message
from campaigns.selectors import STEP_FIGURES, step_counts, step_stats
from crm import clock as keepers_clock
from tests.campaigns.conftest import T0, shopper, track

pytestmark = pytest.mark.django_db


def figures(**given) -> dict:
    return {**dict.fromkeys(STEP_FIGURES, 0), **given}


@pytest.fixture
def ran(abandoned_cart, run):
    """Ten carts abandoned; four enrolments held out before the reminder; one reminder
    opened and one cart bought after it."""
    with time_machine.travel(T0, tick=False) as clock:
        for n in range(10):
            shopper(f"c{n}@example.com")
            track(f"c{n}@example.com", "Checkout Started", T0, f"co-{n}", cart_id=f"cart-{n}")
        clock.shift(timedelta(minutes=2))
        run()
        held = Enrollment.objects.order_by("pk").values("pk")[:4]
        Enrollment.objects.filter(pk__in=held).update(holdout=True)
        clock.shift(timedelta(hours=1))
        run()
        Message.objects.filter(contact__email="c9@example.com").update(
            opened_at=keepers_clock.now()
        )
        track(
            "c9@example.com",
            "Order Completed",
            keepers_clock.now(),
            "oc-9",
            order_id="o-9",
            cart_id="cart-9",
            total=40,
        )
        clock.shift(timedelta(minutes=1))
        run()
    return abandoned_cart


def test_each_figure_per_step_for_treatment_and_holdout(ran):
    counts = step_counts(campaign=ran)
    assert counts["wait-1h"] == {
        "treatment": figures(passed=6),
        "holdout": figures(passed=4),
    }
    assert counts["reminder"]["treatment"] == figures(passed=6, sent=6, opened=1, converted=1)
    assert counts["reminder"]["holdout"] == figures(passed=4)  # held out: nothing sent
    assert counts["wait-1d"] == {"treatment": figures(passed=6), "holdout": figures(passed=4)}
    # due at the condition after the day's wait; c9 bought, so it left (a goal)
    assert counts["bought-1"] == {"treatment": figures(waiting=5), "holdout": figures(waiting=4)}
    assert Conversion.objects.count() == 1


def test_the_counts_are_four_queries_whatever_the_journey(
    ran, abandoned_cart, django_assert_num_queries
):
    with django_assert_num_queries(4):
        step_counts(campaign=ran)
    with django_assert_num_queries(4):
        step_counts(campaign=ran, version_number=1)
    with django_assert_num_queries(4):
        stats = step_stats(campaign=ran)
    assert stats["reminder"]["sent"] == 6 and stats["reminder"]["passed"] == 10


def test_the_admin_serves_the_counts_the_nodes_show(ran, staff_client):
    answer = staff_client.get(f"/admin/campaigns/campaign/{ran.pk}/journey/counts/").json()
    assert answer["counts"]["reminder"]["treatment"]["sent"] == 6
