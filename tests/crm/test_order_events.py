"""One order path: however an order or a refund arrives (the REST API, Segment's track, a CSV
import, the admin, the demo), it is recorded once as an "Order Completed" (or "Order
Refunded") event with Segment's e-commerce spec v2 properties; history is marked as
backfill."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from crm.models import Event, Order, Refund

pytestmark = pytest.mark.django_db
URL = "/api/v1/orders/"
AT = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)


def rest_order(n: int = 7, **extra) -> dict:
    return {
        "external_id": f"o-{n}",
        "email": "buyer@example.com",
        "total": "59.90",
        "currency": "eur",
        "ordered_at": AT.isoformat(),
        "items": [
            {"product_id": "SKU-1", "name": "Kettle", "category": "Brewing", "price": "59.90"}
        ],
        "attributes": {"checkout_id": "chk-7", "coupon": "TEA10", "channel": "phone"},
        **extra,
    }


def track(client, write_key, *messages: dict):
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    return client.post(
        "/v1/batch",
        json.dumps({"batch": list(messages)}),
        content_type="application/json",
        HTTP_AUTHORIZATION=auth,
    )


def segment_order(message_id: str, order_id: str = "o-7") -> dict:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u-1",
        "messageId": message_id,
        "timestamp": AT.isoformat(),
        "context": {"traits": {"email": "buyer@example.com"}},
        "properties": {"order_id": order_id, "checkout_id": "chk-7", "total": 59.9},
    }


def completed() -> list[Event]:
    return list(Event.objects.filter(name="Order Completed").order_by("pk"))


def test_an_order_from_the_api_is_recorded_once_as_the_spec_shapes_it(api):
    assert api.post(URL, rest_order(), format="json").status_code == 201
    assert api.post(URL, rest_order(), format="json").json()["status"] == "duplicate"
    (event,) = completed()
    assert (event.source, event.message_id, event.occurred_at) == ("orders", "order:o-7", AT)
    assert event.contact_id == Order.objects.get().contact_id
    assert event.properties == {
        "order_id": "o-7",
        "checkout_id": "chk-7",
        "coupon": "TEA10",
        "channel": "phone",
        "total": 59.9,
        "revenue": 59.9,
        "currency": "EUR",
        "products": [
            {
                "product_id": "SKU-1",
                "sku": "SKU-1",
                "name": "Kettle",
                "category": "Brewing",
                "price": 59.9,
                "quantity": 1,
            }
        ],
    }


def test_history_posted_to_the_api_is_marked_as_backfill(api):
    body = api.post(URL, [rest_order(1, backfill=True), rest_order(2)], format="json").json()
    assert body["created"] == 2
    flags = {e.properties["order_id"]: e.properties.get("backfill") for e in completed()}
    assert flags == {"o-1": True, "o-2": None}
    refused = api.post(URL, rest_order(3, backfill="yes"), format="json")
    assert refused.status_code == 400
    assert refused.json()["details"]["field"] == "backfill"


def test_a_tracked_order_keeps_its_own_event_and_records_no_second(client, write_key):
    response = track(client, write_key, segment_order("m-1"), segment_order("m-2"))
    assert response.status_code == 200, response.content
    (event,) = completed()  # m-2 is the same order under another message id
    assert (event.source, event.message_id) == ("segment", "m-1")
    assert Order.objects.get().external_id == "o-7"


def test_an_order_already_posted_is_not_recorded_again_when_tracked(api, client, write_key):
    api.post(URL, rest_order(), format="json")
    assert track(client, write_key, segment_order("m-late")).status_code == 200
    assert [(e.source, e.message_id) for e in completed()] == [("orders", "order:o-7")]


def test_refunds_from_the_api_and_the_admin_are_recorded_once_each(api, admin_client):
    api.post(URL, [rest_order(1), rest_order(2)], format="json")
    refund = {"amount": "10.00", "reason": "chipped", "refund_id": "r-1"}
    assert api.post(f"{URL}o-1/refunds/", refund, format="json").status_code == 201
    assert api.post(f"{URL}o-1/refunds/", refund, format="json").status_code == 200
    order = Order.objects.get(external_id="o-2")
    response = admin_client.post(
        "/admin/crm/order/",
        {"action": "refund_in_full", "_selected_action": [order.pk], "post": "yes"},
        follow=True,
    )
    assert response.status_code == 200
    refunded = Event.objects.filter(name="Order Refunded").order_by("pk")
    assert [(e.source, e.properties["order_id"], e.properties["total"]) for e in refunded] == [
        ("orders", "o-1", 10.0),
        ("orders", "o-2", 59.9),
    ]
    assert refunded[0].properties["reason"] == "chipped"
    assert refunded[0].message_id == f"refund:{Refund.objects.get(external_id='r-1').pk}"


def test_a_tracked_refund_keeps_its_own_event(client, write_key):
    refund = {
        **segment_order("m-r"),
        "event": "Order Refunded",
        "properties": {"order_id": "o-7", "total": 5},
    }
    assert track(client, write_key, segment_order("m-1"), refund).status_code == 200
    assert [e.source for e in Event.objects.filter(name="Order Refunded")] == ["segment"]
    assert Order.objects.get().refunded_total == 5


def test_imported_orders_are_recorded_as_backfill_once(tmp_path: Path):
    path = tmp_path / "orders.csv"
    path.write_text(
        "external_id,contact_external_id,contact_email,ordered_at,total,currency\n"
        "i-1,c-1,,2024-03-01T10:00:00Z,20.00,USD\n"
        "i-2,,b@example.com,2024-03-02,35.50,EUR\n"
    )
    for _ in range(2):  # the second run stores nothing new
        call_command("import_orders", str(path), stdout=StringIO(), stderr=StringIO())
    events = {e.properties["order_id"]: e for e in completed()}
    assert set(events) == {"i-1", "i-2"}
    assert events["i-2"].properties == {
        "order_id": "i-2",
        "total": 35.5,
        "revenue": 35.5,
        "currency": "EUR",
        "products": [],
        "backfill": True,
    }
    assert events["i-1"].occurred_at == datetime(2024, 3, 1, 10, tzinfo=UTC)
    orders = dict(Order.objects.values_list("external_id", "contact_id"))
    assert {k: e.contact_id for k, e in events.items()} == orders
    assert all(e.source == "orders" for e in events.values())
    assert all(e.received_at - e.occurred_at > timedelta(days=300) for e in events.values())
