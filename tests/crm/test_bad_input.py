"""Input a careless integrator sends: never a 500, always a 400 in the JSON error shape
naming the field; in a batch the bad item is reported and the good ones beside it kept.
Each case here answered 500 (or was stored) before the bounds in crm.services.parsing."""

import base64
import json

import pytest

from crm.models import Contact, Event, Order
from loyalty.models import Coupon
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

SURROGATE = '"\\ud800"'  # a lone surrogate, as JSON carries it


def raw(client, path: str, text: str, **extra):
    return client.generic("POST", path, text.encode(), content_type="application/json", **extra)


def assert_field(response, field: str, status: int = 400) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert field in json.dumps(body), body
    return body


def segment_post(client, key: str, text: str):
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return raw(client, "/v1/batch", text, HTTP_AUTHORIZATION=auth)


def test_lone_surrogate_in_a_contact_name(api):
    response = raw(
        api, "/api/v1/contacts/", f'{{"email": "a@example.com", "first_name": {SURROGATE}}}'
    )
    body = assert_field(response, "first_name")
    assert body["details"]["field"] == "first_name"
    assert not Contact.objects.exists()


def test_lone_surrogate_in_an_event_property_keeps_the_good_event(api):
    text = (
        '[{"name": "Viewed", "email": "good@example.com", "message_id": "m1"},'
        f' {{"name": "Viewed", "email": "bad@example.com", "message_id": "m2",'
        f' "properties": {{"title": {SURROGATE}}}}}]'
    )
    response = raw(api, "/api/v1/events/", text)
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert results[0]["status"] == "created"
    assert results[1]["status"] == "error" and results[1]["field"] == "[1].properties.title"
    assert Event.objects.filter(message_id="m1").exists()


def test_segment_batch_keeps_good_items_beside_bad_ones(client, write_key):
    good = {"type": "track", "userId": "u1", "event": "Viewed", "messageId": "good"}
    items = [
        json.dumps(good),
        f'{{"type": "identify", "userId": "u2", "traits": {{"nickname": {SURROGATE}}}}}',
        '{"type": "track", "userId": "u3", "event": "E", "timestamp": "2026-01-01T00:00:00+20:00"}',
        '{"type": "track", "userId": "u4", "event": "E", "timestamp": "0001-01-01T00:00:00Z"}',
        '{"type": "track", "userId": "u5", "event": "E", "properties": '
        + "{" * 0
        + '{"a": ' * 40
        + "1"
        + "}" * 40
        + "}",
        '{"type": "track", "userId": "u6", "event": "Order Completed", "properties": '
        '{"order_id": "big", "products": [{"sku": "x", "price": 9999999, "quantity": 2000}]}}',
        '{"type": "track", "userId": "u7", "event": "Order Completed", "properties": '
        '{"order_id": "q", "total": 1, "products": [{"sku": "x", "quantity": 3000000000}]}}',
    ]
    response = segment_post(client, write_key, '{"batch": [' + ",".join(items) + "]}")
    body = assert_field(response, "invalid_items")
    errors = {e["index"]: e["field"] for e in body["details"]["errors"]}
    assert errors == {
        1: "traits.nickname",
        2: "timestamp",
        3: "timestamp",
        4: "properties" + ".a" * 31,
        5: "properties.total",
        6: "properties.products[0].quantity",
    }, errors
    assert Event.objects.filter(message_id="good").exists()
    assert not Order.objects.exists()


@pytest.mark.parametrize("path", ["/api/v1/events/", "/v1/batch", "/api/v1/contacts/"])
def test_json_nested_3000_deep(client, write_key, path):
    text = "[" * 3000 + "]" * 3000
    response = raw(client, path, text, HTTP_AUTHORIZATION=f"Bearer {write_key}")
    assert_field(response, "nested")


def test_deep_json_in_a_single_object_names_the_path(api):
    deep = '{"a": ' * 40 + "1" + "}" * 40
    response = raw(api, "/api/v1/contacts/", f'{{"email": "a@example.com", "attributes": {deep}}}')
    assert_field(response, "attributes.a.a")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"product_id": "p", "price": "1", "quantity": 3_000_000_000}, "items[0].quantity"),
    ],
)
def test_order_line_beyond_the_column(api, line, field):
    order = {"external_id": "o1", "email": "a@example.com", "total": "1", "items": [line]}
    response = api.post(
        "/api/v1/orders/", [order, {**order, "external_id": "o2", "items": []}], format="json"
    )
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert results[0]["field"] == f"[0].{field}"
    assert results[1]["status"] == "created"


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z", "1899-12-31T23:00:00Z"]
)
def test_order_dates_outside_the_window(api, when):
    order = {"external_id": "o1", "email": "a@example.com", "total": "1", "ordered_at": when}
    response = api.post("/api/v1/orders/", order, format="json")
    assert_field(response, "ordered_at")
    assert not Order.objects.exists()


def test_offset_beyond_what_postgres_accepts(api):
    order = {"external_id": "o1", "email": "a@example.com", "total": "1"}
    response = api.post(
        "/api/v1/orders/", {**order, "ordered_at": "2026-01-01T00:00:00+20:00"}, format="json"
    )
    assert_field(response, "ordered_at")


def test_points_beyond_the_column(api):
    contact = ContactFactory()
    response = api.post(
        "/api/v1/loyalty/points/award/",
        {"contact_id": contact.pk, "points": 10**13, "reason": "x"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k1",
    )
    assert_field(response, "points")


def test_coupon_max_uses_beyond_the_column(api):
    response = api.post(
        "/api/v1/coupons/", {"kind": "percent", "value": 10, "max_uses": 10**12}, format="json"
    )
    assert_field(response, "max_uses")
    assert not Coupon.objects.exists()


def test_credit_expires_in_days_beyond_the_calendar(api):
    contact = ContactFactory()
    response = api.post(
        "/api/v1/loyalty/credit/grant/",
        {
            "contact_id": contact.pk,
            "amount": "5",
            "currency": "EUR",
            "reason": "x",
            "expires_in_days": 10**9,
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="k2",
    )
    assert_field(response, "expires_in_days")


def test_static_segment_without_a_name(api):
    response = api.post("/api/v1/segments/", {"kind": "static"}, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"code", "message", "details"}


def test_metrics_for_years_1_to_9999(api):
    response = api.get("/api/v1/metrics/summary/?start=0001-01-01&end=9999-12-31")
    assert_field(response, "start")


def test_a_body_over_the_limit_is_a_json_error(api, settings):
    response = raw(api, "/api/v1/events/", '{"name": "' + "x" * (9 * 1024 * 1024) + '"}')
    assert response.status_code in (400, 413), response.content[:200]
    assert set(response.json()) == {"code", "message", "details"}


def test_attributes_and_tags_have_a_size_limit(api, settings):
    big = {"blob": "x" * (settings.KEEPERS_MAX_ATTRIBUTES_BYTES + 1)}
    response = api.post(
        "/api/v1/contacts/", {"email": "a@example.com", "attributes": big}, format="json"
    )
    assert_field(response, "attributes")
    tags = [f"t{n}" for n in range(settings.KEEPERS_MAX_TAGS + 1)]
    response = api.post(
        "/api/v1/contacts/", {"email": "a@example.com", "tags": tags}, format="json"
    )
    assert_field(response, "tags")
    assert not Contact.objects.exists()


def test_birthday_in_year_one(api):
    response = api.post(
        "/api/v1/contacts/", {"email": "a@example.com", "birthday": "0001-01-01"}, format="json"
    )
    assert_field(response, "birthday")


def test_nul_in_a_name(api):
    response = api.post(
        "/api/v1/contacts/", {"email": "a@example.com", "first_name": "a\x00b"}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"code", "message", "details"}


def test_broadcast_send_date_in_year_one(api):
    from campaigns.models import Broadcast, EmailTemplate

    EmailTemplate.objects.create(name="news", subject="News", html_body="<p>Hi</p>")
    body = {"name": "x", "template": "news", "send_date": "0001-01-01", "send_time": "09:00"}
    response = api.post("/api/v1/broadcasts/", body, format="json")
    assert_field(response, "send_date")
    assert not Broadcast.objects.exists()


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/contacts/", "created_after"),
        ("/api/v1/contacts/", "created_before"),
        ("/api/v1/events/", "since"),
        ("/api/v1/orders/", "since"),
    ],
)
@pytest.mark.parametrize("when", ["0079-04-21T12:04:45+21:20", "0079-04-21T12:04:45Z"])
def test_query_dates_postgres_cannot_compare(api, path, parameter, when):
    response = api.get(path, {parameter: when})
    body = assert_field(response, parameter)
    assert body["details"]["field"] == parameter


@pytest.mark.parametrize(
    "path", ["/api/v1/contacts/0.5/export/", "/api/v1/broadcasts/0.5/pause/", "/api/v1/nothing/"]
)
def test_a_path_the_api_does_not_have_is_a_json_404(api, path):
    response = api.post(path, {}, format="json")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"
