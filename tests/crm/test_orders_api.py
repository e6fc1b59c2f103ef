"""Orders: single and batch, idempotent on external_id; refunds recorded, never deletions."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from crm.models import Contact, Order, Product, Refund

pytestmark = pytest.mark.django_db
URL = "/api/v1/orders/"


def order(n: int, **extra) -> dict:
    return {
        "external_id": f"o-{n}",
        "email": f"shopper{n % 2}@example.com",
        "total": "59.90",
        "currency": "eur",
        "ordered_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
        "items": [
            {
                "product_id": "SKU-1",
                "name": "Kettle",
                "category": "Brewing",
                "quantity": 1,
                "price": "59.90",
            }
        ],
        **extra,
    }


def test_an_order_creates_the_contact_lines_products_and_stage(api):
    response = api.post(URL, order(1), format="json")
    assert response.status_code == 201, response.json()
    stored = Order.objects.get()
    assert (stored.total, stored.currency, stored.status) == (Decimal("59.90"), "EUR", "placed")
    assert stored.lines.get().product.name == "Kettle"
    assert Contact.objects.get().stage == "first_time"
    assert Product.objects.get().category == "Brewing"


def test_a_batch_keeps_the_good_orders_and_reports_the_bad(api):
    batch = [order(n) for n in range(4)]
    batch[1]["total"] = "-3"
    batch[3]["currency"] = "XXX"
    body = api.post(URL, batch, format="json").json()
    assert (body["created"], body["errors"]) == (2, 2)
    fields = sorted(r["field"] for r in body["results"] if r["status"] == "error")
    assert fields == ["[1].total", "[3].currency"]
    assert Order.objects.count() == 2


def test_the_same_order_twice_is_stored_once(api):
    api.post(URL, [order(1), order(2)], format="json")
    again = api.post(URL, [order(1), order(2)], format="json").json()
    assert again["duplicates"] == 2
    assert Order.objects.count() == 2
    assert Contact.objects.get(email="shopper1@example.com").stage == "first_time"


def test_partial_then_full_refund(api):
    api.post(URL, order(1), format="json")
    partial = api.post(
        f"{URL}o-1/refunds/", {"amount": "9.90", "refund_id": "r1", "reason": "late"}, format="json"
    )
    assert partial.status_code == 201
    assert Order.objects.get().status == "partially_refunded"
    repeat = api.post(f"{URL}o-1/refunds/", {"amount": "9.90", "refund_id": "r1"}, format="json")
    assert repeat.status_code == 200
    assert Refund.objects.count() == 1
    too_much = api.post(f"{URL}o-1/refunds/", {"amount": "80"}, format="json")
    assert too_much.status_code == 400
    assert too_much.json()["details"]["field"] == "amount"
    rest = api.post(f"{URL}o-1/refunds/", {}, format="json")
    assert rest.status_code == 201
    assert Decimal(rest.json()["amount"]) == Decimal("50.00")
    stored = Order.objects.get()
    assert (stored.status, stored.refunded_total) == ("refunded", Decimal("59.90"))
    assert Contact.objects.get().stage == "subscriber"


def test_order_list_and_detail_with_a_fixed_number_of_queries(api, django_assert_max_num_queries):
    api.post(URL, [order(n) for n in range(20)], format="json")
    with django_assert_max_num_queries(6):
        response = api.get(URL)
    assert len(response.json()["results"]) == 20
    detail = api.get(f"{URL}o-3/").json()
    assert detail["lines"][0]["product_id"] == "SKU-1"


def test_catalog_feed_upserts_products(api):
    created = api.post(
        "/api/v1/products/",
        [{"product_id": "P1", "name": "Mug", "price": "12", "currency": "USD", "in_stock": True}],
        format="json",
    )
    assert created.json()["created"] == 1
    updated = api.post(
        "/api/v1/products/",
        [{"product_id": "P1", "in_stock": False}, {"product_id": "P2", "in_stock": "maybe"}],
        format="json",
    ).json()
    assert (updated["updated"], updated["errors"]) == (1, 1)
    assert Product.objects.get(product_id="P1").in_stock is False
