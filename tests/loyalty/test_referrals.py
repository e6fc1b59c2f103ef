"""Referrals: attach, fraud rules with reasons, pending until the return window, then
both sides rewarded once — or cancelled by a refund."""

import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from crm.models import Contact, Event
from crm.services.contacts import Identity
from crm.services.orders import OrderIn, order_refund, orders_place
from loyalty.models import LedgerEntry, Referral, ReferralRefusal
from loyalty.services.ledger import ledger_balances
from loyalty.services.referrals import (
    normalised_email,
    referral_attach,
    referral_code_for,
    referrals_reward_due,
)

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def person(email: str, **extra) -> Contact:
    return Contact.objects.create(email=email, created_at=T0, updated_at=T0, **extra)


def order(email: str, total: str, ref: str, django_capture_on_commit_callbacks, **attributes):
    with django_capture_on_commit_callbacks(execute=True):
        orders_place(
            [
                OrderIn(
                    external_id=ref,
                    identity=Identity(email=email),
                    total=Decimal(total),
                    currency="USD",
                    ordered_at=dt.datetime.now(dt.UTC),
                    lines=[],
                    attributes=attributes,
                )
            ]
        )


def test_both_sides_are_rewarded_once_after_the_return_window(
    django_capture_on_commit_callbacks, clock
):
    ada, bo = person("ada@example.com", first_name="Ada"), person("bo@example.com", first_name="Bo")
    code = referral_code_for(ada)
    assert len(code.code) == 8 and code.code == referral_code_for(ada).code

    assert referral_attach(friend=bo, code=code.code.lower(), channel="form") is not None
    order(bo.email, "45", "o-1", django_capture_on_commit_callbacks)
    referral = Referral.objects.get()
    assert referral.status == "pending"
    assert referral.reward_at == T0 + 30 * DAY

    clock.shift(29 * DAY)
    assert referrals_reward_due() == 0
    clock.shift(DAY)
    assert referrals_reward_due() == 1
    assert referrals_reward_due() == 0

    referral.refresh_from_db()
    assert referral.status == "rewarded"
    for contact in (ada, bo):
        assert ledger_balances(contact)["USD"].available == Decimal("10")
    assert set(
        Event.objects.filter(name="Referral Rewarded").values_list(
            "contact__email", "properties__side"
        )
    ) == {("ada@example.com", "referrer"), ("bo@example.com", "friend")}


def test_a_refund_in_the_return_window_cancels_the_pending_rewards(
    django_capture_on_commit_callbacks, clock
):
    ada, bo = person("ada@example.com"), person("bo@example.com")
    # the code comes with the order itself (the API's referral_code)
    order(
        bo.email,
        "60",
        "o-1",
        django_capture_on_commit_callbacks,
        referral_code=referral_code_for(ada).code,
    )
    assert Referral.objects.get().status == "pending"

    clock.shift(5 * DAY)
    with django_capture_on_commit_callbacks(execute=True):
        order_refund(order_external_id="o-1", refund_id="r-1")
    clock.shift(40 * DAY)
    referrals_reward_due()

    referral = Referral.objects.get()
    assert referral.status == "cancelled"
    assert referral.reason == "the qualifying order was refunded"
    assert not LedgerEntry.objects.filter(source_type="referral").exists()


def test_self_referral_is_refused_with_the_reason(django_capture_on_commit_callbacks):
    ada = person("alice.smith@gmail.com")
    code = referral_code_for(ada).code
    twin = person("alicesmith+deals@googlemail.com")
    stranger = person("cy@example.com")

    assert referral_attach(friend=ada, code=code, channel="form") is None
    assert referral_attach(friend=twin, code=code, channel="form") is None
    assert referral_attach(friend=stranger, code=code, channel="form") is not None
    # the same card as the referrer's own orders
    order(ada.email, "20", "own", django_capture_on_commit_callbacks, payment_fingerprint="card-42")
    order(
        stranger.email,
        "50",
        "o-2",
        django_capture_on_commit_callbacks,
        payment_fingerprint="CARD-42",
    )

    assert list(ReferralRefusal.objects.order_by("pk").values_list("reason", flat=True)) == [
        "self-referral: the same contact",
        "self-referral: the same email address",
        "self-referral: the same payment fingerprint",
    ]
    assert Referral.objects.get(friend=stranger).status == "refused"
    assert normalised_email("A.B+x@GMail.com") == "ab@gmail.com"


def test_the_monthly_cap_and_one_referrer_per_friend(settings, django_capture_on_commit_callbacks):
    settings.KEEPERS_REFERRAL_MONTHLY_CAP = 2
    ada, cy = person("ada@example.com"), person("cy@example.com")
    friends = [person(f"f{i}@example.com") for i in range(3)]
    code = referral_code_for(ada).code

    attached = [referral_attach(friend=f, code=code, channel="form") for f in friends]
    assert [a is not None for a in attached] == [True, True, False]
    assert (
        referral_attach(friend=friends[0], code=referral_code_for(cy).code, channel="form") is None
    )
    # a first order below the minimum does not qualify
    order(friends[0].email, "29.99", "small", django_capture_on_commit_callbacks)

    assert list(ReferralRefusal.objects.order_by("pk").values_list("reason", flat=True)) == [
        "the referrer's monthly cap (2) is reached",
        "already referred by someone else",
        "first order below the minimum (29.9900 < 30)",
    ]
    assert Referral.objects.get(friend=friends[0]).status == "refused"
