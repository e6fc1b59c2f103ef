"""The loyalty API: summary, ledger, points and store credit with Idempotency-Key."""

import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from crm.models import Contact
from loyalty.models import EarnRule, LedgerEntry

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def at_t0():
    with time_machine.travel(T0, tick=False):
        yield


@pytest.fixture
def ada(db):
    return Contact.objects.create(email="ada@example.com", created_at=T0, updated_at=T0)


def post(api, path, body, key="k1"):
    return api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_store_credit_is_granted_redeemed_and_summarised(api, ada):
    welcome = post(
        api,
        "/api/v1/loyalty/credit/grant/",
        {
            "email": ada.email,
            "amount": "35",
            "currency": "EUR",
            "reason": "Welcome",
            "expires_in_days": 14,
        },
        "g1",
    )
    assert welcome.status_code == 201, welcome.json()
    assert welcome.json()["expires_at"] == "2026-03-15T12:00:00Z"
    post(
        api,
        "/api/v1/loyalty/credit/grant/",
        {"contact_id": ada.pk, "amount": "5", "currency": "EUR", "reason": "Bonus"},
        "g2",
    )

    spent = post(
        api,
        "/api/v1/loyalty/credit/redeem/",
        {"contact_id": ada.pk, "amount": "30", "currency": "EUR", "order_id": "o-1"},
        "r1",
    )
    assert spent.status_code == 201 and spent.json()["amount"] == "-30.0000"
    again = post(
        api,
        "/api/v1/loyalty/credit/redeem/",
        {"contact_id": ada.pk, "amount": "30", "currency": "EUR", "order_id": "o-1"},
        "r1",
    )
    assert again.status_code == 201 and again.json() == spent.json()  # replayed, nothing moved
    other = post(
        api,
        "/api/v1/loyalty/credit/redeem/",
        {"contact_id": ada.pk, "amount": "31", "currency": "EUR", "order_id": "o-1"},
        "r1",
    )
    assert other.status_code == 422
    too_much = post(
        api,
        "/api/v1/loyalty/credit/redeem/",
        {"contact_id": ada.pk, "amount": "11", "currency": "EUR"},
        "r2",
    )
    assert too_much.status_code == 409
    assert (
        too_much.json()["message"]
        == "Not enough store credit in EUR: 10.00 EUR available, 11.00 EUR asked."
    )

    summary = api.get(f"/api/v1/loyalty/contacts/{ada.pk}/").json()
    assert summary["store_credit"] == [
        {
            "unit": "EUR",
            "available": "10.00",
            "pending": "0.00",
            "expiring": [{"expires_at": "2026-03-15T12:00:00Z", "amount": "5.00"}],
        }
    ]
    ledger = api.get(f"/api/v1/loyalty/contacts/{ada.pk}/ledger/").json()["results"]
    assert sorted(e["type"] for e in ledger) == ["earn", "earn", "redeem"]


def test_points_are_awarded_and_redeemed_into_credit(api, ada):
    EarnRule.objects.create(currency="EUR", credit_per_point="0.05")
    assert (
        post(
            api,
            "/api/v1/loyalty/points/award/",
            {"contact_id": ada.pk, "points": 300, "reason": "Review"},
            "a1",
        ).status_code
        == 201
    )

    swap = post(
        api,
        "/api/v1/loyalty/points/redeem/",
        {"contact_id": ada.pk, "points": 200, "currency": "EUR"},
        "s1",
    )

    assert swap.status_code == 201, swap.json()
    assert swap.json()["store_credit"]["amount"] == "10.0000"
    coupon = post(
        api,
        "/api/v1/loyalty/points/redeem/",
        {"contact_id": ada.pk, "points": 50, "currency": "EUR", "into": "coupon"},
        "s2",
    )
    assert coupon.status_code == 201, coupon.json()
    assert coupon.json()["coupon"]["value"] == "2.50"
    summary = api.get(f"/api/v1/loyalty/contacts/{ada.pk}/").json()
    assert summary["points"]["available"] == 50
    assert summary["store_credit"][0]["available"] == "10.00"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/loyalty/points/award/", {"points": 0, "reason": "x"}, "points"),
        ("/api/v1/loyalty/points/award/", {"points": 5}, "reason"),
        (
            "/api/v1/loyalty/credit/grant/",
            {"amount": "-1", "currency": "EUR", "reason": "x"},
            "amount",
        ),
        (
            "/api/v1/loyalty/credit/grant/",
            {"amount": "1", "currency": "EURO", "reason": "x"},
            "currency",
        ),
        (
            "/api/v1/loyalty/credit/grant/",
            {"amount": "1", "currency": "EUR", "reason": "x", "colour": 1},
            "colour",
        ),
        ("/api/v1/loyalty/points/redeem/", {"points": 5, "into": "gold"}, "into"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, ada, path, body, field):
    response = post(api, path, {"contact_id": ada.pk, **body})

    assert response.status_code == 400, response.json()
    assert response.json()["details"]["field"] == field
    assert LedgerEntry.objects.count() == 0


def test_a_write_without_an_idempotency_key_is_refused(api, ada):
    response = api.post(
        "/api/v1/loyalty/points/award/",
        {"contact_id": ada.pk, "points": 5, "reason": "x"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["details"]["field"] == "Idempotency-Key"


def test_a_read_only_key_cannot_move_value(read_api, ada):
    response = post(
        read_api,
        "/api/v1/loyalty/points/award/",
        {"contact_id": ada.pk, "points": 5, "reason": "x"},
    )

    assert response.status_code == 403


def test_the_summary_shows_tier_and_pending_referral_rewards_and_referrals_are_listed(api, ada):
    from loyalty.models import Referral, Tier
    from loyalty.services.referrals import referral_code_for

    Tier.objects.create(name="Insider", rank=1, basis="spend", threshold=0)
    bo = Contact.objects.create(
        email="bo@example.com", first_name="Bo", created_at=T0, updated_at=T0
    )
    Referral.objects.create(
        referrer=ada,
        friend=bo,
        code=referral_code_for(ada),
        status="pending",
        reward_at=T0 + dt.timedelta(days=30),
        created_at=T0,
    )

    summary = api.get(f"/api/v1/loyalty/contacts/{ada.pk}/").json()
    referrals = api.get(f"/api/v1/loyalty/contacts/{ada.pk}/referrals/").json()["results"]

    assert summary["pending_referral_rewards"] == [
        {
            "referral_id": referrals[0]["id"],
            "friend": "Bo",
            "reward": "10.00 USD store credit",
            "due_at": "2026-03-31T12:00:00Z",
        }
    ]
    assert summary["tier"]["next_tier"] is not None or summary["tier"]["tier"] is not None
    assert [(r["friend_email"], r["status"]) for r in referrals] == [("bo@example.com", "pending")]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_api_redemptions_spend_exactly_the_balance(write_key):
    import threading

    from django.db import connection
    from rest_framework.test import APIClient

    from loyalty.services.credit import credit_grant
    from loyalty.services.ledger import ledger_sum

    ada = Contact.objects.create(email="ada@example.com", created_at=T0, updated_at=T0)
    credit_grant(contact=ada, amount=Decimal("100"), currency="EUR", reason="x", key="g", now=T0)
    barrier = threading.Barrier(20)
    answers: list[tuple[int, str]] = []

    def redeem(n: int) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {write_key}")
        try:
            barrier.wait()
            response = post(
                client,
                "/api/v1/loyalty/credit/redeem/",
                {"contact_id": ada.pk, "amount": "15", "currency": "EUR", "order_id": f"o{n}"},
                f"k{n}",
            )
            answers.append((response.status_code, response.json().get("message", "")))
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    codes = sorted(code for code, _ in answers)
    assert codes == [201] * 6 + [409] * 14
    assert all(m.startswith("Not enough store credit in EUR") for c, m in answers if c == 409)
    assert ledger_sum(ada, "EUR") == Decimal("10")
