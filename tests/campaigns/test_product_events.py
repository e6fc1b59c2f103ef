"""Product events fan out: a restock reaches each contact who asked, once; a repeat of
the same event changes nothing; a product sold out again before the send is not
announced; a price drop reaches those who viewed it lately."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail

from campaigns.models import Enrollment
from campaigns.playbooks import playbooks_install
from crm.models import Event, Product
from crm.services.products import back_in_stock_request, products_upsert
from tests.campaigns.conftest import T0, sent_to, shopper, track

pytestmark = pytest.mark.django_db


@pytest.fixture
def mug(db):
    playbooks_install()
    return Product.objects.create(
        product_id="MUG-1", name="Blue mug", price="20.00", currency="EUR", in_stock=False
    )


def announced() -> list[str]:
    return sorted(m.to[0] for m in mail.outbox if m.subject == "Blue mug is back")


def restock(api, message_id: str = "restock-1"):
    return api.post(
        "/api/v1/products/events/",
        {"event": "Product Restocked", "product_id": "MUG-1", "message_id": message_id},
        format="json",
    )


def test_a_restock_reaches_each_contact_who_asked_once(api, mug, run):
    with time_machine.travel(T0, tick=False) as clock:
        for email in ("ada@example.com", "bo@example.com"):
            shopper(email)
            assert (
                api.post(
                    "/api/v1/back-in-stock/", {"product_id": "MUG-1", "email": email}, format="json"
                ).status_code
                == 201
            )
        # asking twice the same day is one request
        again = api.post(
            "/api/v1/back-in-stock/",
            {"product_id": "MUG-1", "email": "ada@example.com"},
            format="json",
        )
        assert again.status_code == 200
        shopper("cy@example.com")  # did not ask
        clock.shift(timedelta(minutes=5))

        first = restock(api)
        assert first.status_code == 201 and first.json()["created"] is True
        mug.refresh_from_db()
        assert mug.in_stock is True
        clock.shift(timedelta(seconds=10))
        run()
        assert announced() == ["ada@example.com", "bo@example.com"]

        # the same event again (same message id): nothing changes
        duplicate = restock(api)
        assert duplicate.status_code == 200 and duplicate.json()["created"] is False
        clock.shift(timedelta(seconds=10))
        run()
        assert announced() == ["ada@example.com", "bo@example.com"]
        assert Event.objects.filter(name="Product Restocked").count() == 1

        # a later restock (new id) does not answer the same requests again
        Product.objects.filter(pk=mug.pk).update(in_stock=False)
        restock(api, "restock-2")
        clock.shift(timedelta(seconds=10))
        run()
        assert announced() == ["ada@example.com", "bo@example.com"]
    assert Enrollment.objects.filter(campaign__name="Back in stock").count() == 2


def test_a_product_out_of_stock_again_before_the_send_is_not_announced(api, mug, run):
    with time_machine.travel(T0, tick=False) as clock:
        shopper("ada@example.com")
        back_in_stock_request(product_id="MUG-1", email="ada@example.com")
        clock.shift(timedelta(minutes=1))
        restock(api)
        # sold out again within seconds, before the trigger pass runs
        products_upsert([{"product_id": "MUG-1", "in_stock": False}])
        clock.shift(timedelta(seconds=10))
        run()
    assert announced() == []
    enrollment = Enrollment.objects.get(campaign__name="Back in stock")
    assert enrollment.status == "completed"
    assert enrollment.runs.get().decision == "no"


def test_the_catalog_feed_announces_a_restock_and_a_price_drop(mug, run):
    with time_machine.travel(T0, tick=False) as clock:
        shopper("ada@example.com")
        shopper("bo@example.com")
        back_in_stock_request(product_id="MUG-1", email="ada@example.com")
        track("bo@example.com", "Product Viewed", T0, "view-1", product_id="MUG-1")
        clock.shift(timedelta(minutes=1))

        products_upsert([{"product_id": "MUG-1", "in_stock": True, "price": 15}])
        clock.shift(timedelta(seconds=10))
        run()

    assert "Blue mug is back" in sent_to("ada@example.com")
    assert "A lower price on Blue mug" not in sent_to("ada@example.com")
    assert "A lower price on Blue mug" in sent_to("bo@example.com")
    assert "Blue mug is back" not in sent_to("bo@example.com")
    drop = next(m for m in mail.outbox if m.subject == "A lower price on Blue mug")
    html = drop.alternatives[0][0]
    assert "<s>20.00</s>" in html and "15.00 EUR" in html


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event": "Product Exploded", "product_id": "MUG-1"}, "event"),
        ({"event": "Product Restocked"}, "product_id"),
        ({"event": "Product Restocked", "product_id": "NOPE"}, "product_id"),
        (
            {
                "event": "Price Dropped",
                "product_id": "MUG-1",
                "properties": {"old_price": 10, "new_price": 12},
            },
            "properties.new_price",
        ),
        ({"event": "Price Dropped", "product_id": "MUG-1"}, "properties.old_price"),
        ({"event": "Product Restocked", "product_id": "MUG-1", "colour": "red"}, "colour"),
    ],
)
def test_bad_product_events_name_the_field(api, mug, body, field):
    response = api.post("/api/v1/products/events/", body, format="json")

    assert response.status_code in (400, 404), response.json()
    assert response.json()["details"]["field"] == field


def test_a_back_in_stock_request_needs_someone(api, mug):
    response = api.post("/api/v1/back-in-stock/", {"product_id": "MUG-1"}, format="json")

    assert response.status_code == 400
    assert response.json()["details"]["field"] == "email"
