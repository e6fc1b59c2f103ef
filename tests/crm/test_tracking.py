"""The Segment-compatible endpoints (/v1/batch, /v1/identify, /v1/track, …): what an SDK
sends is mapped to contacts, events, orders and refunds; bad items are named by index and
field while the good ones are kept; auth, limits and encodings answer JSON, never a 500."""

from __future__ import annotations

import base64
import copy
import gzip
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from crm.models import Contact, ContactAlias, Event, Order, OrderStatus, Refund, Stage

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_clock():
    """The shop's data is dated around T0; stages depend on how old orders are."""
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def post(
    client,
    path: str,
    body,
    *,
    key: str | None = None,
    headers: dict | None = None,
    content_type: str = "application/json",
):
    """POST raw bytes (or JSON-encoded data) the way an SDK does: the key as the Basic
    username with an empty password."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    extra = dict(headers or {})
    if key is not None:
        extra["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return client.generic("POST", path, data, content_type=content_type, **extra)


def shop_batch() -> dict:
    return {
        "batch": [
            {
                "type": "identify",
                "messageId": "m-identify",
                "userId": "u-1",
                "traits": {
                    "email": "Ann@Example.com",
                    "firstName": "Ann",
                    "lastName": "Lee",
                    "timezone": "Europe/Paris",
                    "favouriteRoast": "dark",
                },
                "timestamp": "2026-03-01T09:00:00Z",
            },
            {
                "type": "track",
                "messageId": "m-view",
                "userId": "u-1",
                "event": "Product Viewed",
                "properties": {"product_id": "beans-1", "price": 12.5},
                "timestamp": "2026-03-01T09:01:00Z",
            },
            {
                "type": "page",
                "messageId": "m-page",
                "userId": "u-1",
                "name": "Checkout",
                "properties": {"url": "https://shop.example/checkout"},
                "timestamp": "2026-03-01T09:02:00Z",
            },
            {
                "type": "track",
                "messageId": "m-order",
                "userId": "u-1",
                "event": "Order Completed",
                "properties": {
                    "order_id": "A-100",
                    "total": 37.5,
                    "currency": "eur",
                    "products": [
                        {"product_id": "beans-1", "name": "Beans", "price": 12.5, "quantity": 2},
                        {"sku": "filter-9", "name": "Filters", "price": "12.50"},
                    ],
                },
                "timestamp": "2026-03-01T09:03:00Z",
            },
        ],
        "context": {"library": {"name": "analytics.js", "version": "5.0.0"}},
        "sentAt": "2026-03-01T09:03:01Z",
    }


def error_fields(response) -> dict[int, str]:
    return {e["index"]: e["field"] for e in response.json()["details"]["errors"]}


# --- the happy path ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_batch_maps_identify_track_page_and_order(client, write_key):
    # given a batch as analytics.js sends it
    # when it is posted
    response = post(client, "/v1/batch", shop_batch(), key=write_key)

    # then it is accepted
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True}
    # and the contact carries the traits, unknown ones in attributes
    contact = Contact.objects.get(external_id="u-1")
    assert contact.email == "ann@example.com"
    assert (contact.first_name, contact.last_name) == ("Ann", "Lee")
    assert contact.timezone == "Europe/Paris"
    assert contact.attributes == {"favouriteRoast": "dark"}
    # and the events are stored under Segment's names, page as "Page Viewed"
    events = dict(Event.objects.filter(contact=contact).values_list("message_id", "name"))
    assert events == {
        "m-view": "Product Viewed",
        "m-page": "Page Viewed",
        "m-order": "Order Completed",
    }
    page = Event.objects.get(message_id="m-page")
    assert page.properties["name"] == "Checkout"
    assert page.context["library"]["name"] == "analytics.js"
    assert page.occurred_at == datetime(2026, 3, 1, 9, 2, tzinfo=UTC)
    # and the order exists with its lines, and made her a first-time customer
    order = Order.objects.get(external_id="A-100")
    assert order.contact == contact
    assert (order.total, order.currency) == (Decimal("37.5"), "EUR")
    lines = sorted(order.lines.values_list("product_ref", "quantity", "unit_price"))
    assert lines == [("beans-1", 2, Decimal("12.5")), ("filter-9", 1, Decimal("12.5"))]
    contact.refresh_from_db()
    assert contact.stage == Stage.FIRST_TIME


@pytest.mark.django_db
def test_a_redelivered_batch_stores_everything_once(client, write_key):
    # given a batch that was delivered once
    assert post(client, "/v1/batch", shop_batch(), key=write_key).status_code == 200

    # when the SDK retries it
    response = post(client, "/v1/batch", shop_batch(), key=write_key)

    # then it succeeds and nothing is stored twice
    assert response.status_code == 200
    assert Event.objects.count() == 3
    assert Order.objects.count() == 1
    assert Order.objects.get().lines.count() == 2
    assert Contact.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["identify", "track", "page", "screen", "group"])
def test_single_endpoints_answer_success(client, write_key, kind):
    # given one message of that kind
    message = {"userId": "u-9", "event": "Signed Up", "name": "Home", "groupId": "g-1"}

    # when it is posted to its own endpoint
    response = post(client, f"/v1/{kind}", message, key=write_key)

    # then Segment's success body comes back
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True}


@pytest.mark.django_db
def test_single_endpoints_store_what_they_say(client, write_key):
    # when a person is identified, then tracked and sees a page, one call each
    post(
        client,
        "/v1/identify",
        {"userId": "u-2", "traits": {"email": "bo@example.com"}},
        key=write_key,
    )
    post(
        client,
        "/v1/track",
        {"userId": "u-2", "event": "Signed Up", "messageId": "t1"},
        key=write_key,
    )
    post(client, "/v1/page", {"userId": "u-2", "messageId": "p1"}, key=write_key)

    # then the contact has both events
    contact = Contact.objects.get(email="bo@example.com")
    assert sorted(contact.events.values_list("name", flat=True)) == ["Page Viewed", "Signed Up"]


@pytest.mark.django_db
def test_a_single_endpoint_refuses_another_type(client, write_key):
    # when a track message is posted to /v1/identify
    response = post(client, "/v1/identify", {"type": "track", "userId": "u"}, key=write_key)

    # then the field is named
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "type"


# --- bad items -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_bad_items_are_named_and_the_others_kept(client, write_key):
    # given a batch where item 1 has no event name and item 2 a bad timestamp
    body = {
        "batch": [
            {"type": "track", "userId": "u-1", "event": "Good", "messageId": "ok-1"},
            {"type": "track", "userId": "u-1", "messageId": "no-name"},
            {"type": "track", "userId": "u-1", "event": "Late", "timestamp": "yesterday"},
            {"type": "page", "userId": "u-1", "messageId": "ok-2"},
        ]
    }

    # when it is posted
    response = post(client, "/v1/batch", body, key=write_key)

    # then the answer is a 400 naming each bad item and field
    assert response.status_code == 400
    payload = response.json()
    assert payload["code"] == "invalid_items"
    assert payload["message"]
    assert error_fields(response) == {1: "event", 2: "timestamp"}
    assert all(e["message"] for e in payload["details"]["errors"])
    # and the good items were stored
    assert set(Event.objects.values_list("message_id", flat=True)) == {"ok-1", "ok-2"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"type": "shout", "userId": "u"}, "type"),
        ("not an object", "type"),
        ({"type": "track", "event": "Anonymous nobody"}, "userId"),
        ({"type": "track", "userId": "u", "event": "X", "properties": []}, "properties"),
        ({"type": "track", "userId": {"id": 1}, "event": "X"}, "userId"),
        ({"type": "alias", "userId": "u"}, "previousId"),
        ({"type": "track", "userId": "u", "event": "X", "context": "web"}, "context"),
        (
            {"type": "track", "userId": "u", "event": "X", "properties": {"email": "nope"}},
            "properties.email",
        ),
        (
            {
                "type": "track",
                "userId": "u",
                "event": "X",
                "originalTimestamp": "9999-12-31T00:00:00Z",
                "sentAt": "0001-01-01T00:00:00Z",
            },
            "sentAt",
        ),
    ],
)
def test_each_kind_of_bad_item_names_its_field(client, write_key, item, field):
    # when a batch carries one bad item after a good one
    body = {"batch": [{"type": "track", "userId": "u", "event": "Fine"}, item]}
    response = post(client, "/v1/batch", body, key=write_key)

    # then it is reported as item 1 with its field, and the good one is stored
    assert response.status_code == 400, response.content
    assert error_fields(response) == {1: field}
    assert Event.objects.filter(name="Fine").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("message", "field"),
    [
        (
            {"type": "identify", "userId": "u", "traits": {"timezone": "Mars/Base"}},
            "traits.timezone",
        ),
        ({"type": "identify", "userId": "u", "traits": {"email": "not-an-email"}}, "traits.email"),
        ({"type": "identify", "userId": "u", "traits": {"birthday": "someday"}}, "traits.birthday"),
        (
            {
                "type": "track",
                "userId": "u",
                "event": "Order Completed",
                "properties": {"order_id": "o1", "total": 10, "currency": "EURO"},
            },
            "properties.currency",
        ),
        (
            {
                "type": "track",
                "userId": "u",
                "event": "Order Completed",
                "properties": {"order_id": "o1", "total": "ten"},
            },
            "properties.total",
        ),
        (
            {
                "type": "track",
                "userId": "u",
                "event": "Order Completed",
                "properties": {"total": 10},
            },
            "properties.order_id",
        ),
        (
            {
                "type": "track",
                "userId": "u",
                "event": "Order Completed",
                "properties": {"order_id": "o1", "products": [{"price": 1, "quantity": 0}]},
            },
            "properties.products[0].quantity",
        ),
        (
            {
                "type": "track",
                "anonymousId": "a",
                "event": "Order Completed",
                "properties": {"order_id": "o1", "total": 10},
            },
            "userId",
        ),
    ],
)
def test_invalid_traits_and_order_properties_name_the_field(client, write_key, message, field):
    # when the message is posted
    response = post(client, "/v1/batch", {"batch": [message]}, key=write_key)

    # then it is refused with the field named, and nothing half-written stays behind
    assert response.status_code == 400, response.content
    assert error_fields(response) == {0: field}
    assert not Order.objects.exists()
    assert not Event.objects.filter(name="Order Completed").exists()


@pytest.mark.django_db
def test_the_device_time_zone_fills_a_gap_and_a_bad_one_is_skipped(client, write_key):
    # given two identifies without a timezone trait: one from a device with a usable zone
    # and locale, one from a device reporting a zone that does not exist
    body = {
        "batch": [
            {
                "type": "identify",
                "userId": "u-1",
                "context": {"timezone": "America/Chicago", "locale": "en-US"},
            },
            {"type": "identify", "userId": "u-2", "context": {"timezone": "Nowhere/Land"}},
        ]
    }

    # when posted
    response = post(client, "/v1/batch", body, key=write_key)

    # then both are accepted: the usable zone is kept, the other skipped
    assert response.status_code == 200, response.content
    first = Contact.objects.get(external_id="u-1")
    assert (first.timezone, first.locale) == ("America/Chicago", "en-US")
    assert Contact.objects.get(external_id="u-2").timezone == ""


@pytest.mark.django_db
def test_an_item_in_a_batch_with_a_non_object_context_is_an_item_error(client, write_key):
    # given a batch with a shared context and an item whose own context is not an object
    body = {
        "batch": [{"type": "track", "userId": "u", "event": "X", "context": "web"}],
        "context": {"ip": "203.0.113.9"},
    }

    # when it is posted, then it is a 400 for that item, not a 500
    response = post(client, "/v1/batch", body, key=write_key)
    assert response.status_code == 400
    assert error_fields(response) == {0: "context"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"properties": {"note": "nul \u0000 byte"}}, "properties.note"),
        ({"properties": {"prices": [1, float("nan")]}}, "properties.prices[1]"),
        ({"properties": {"big": float("inf")}}, "properties.big"),
        ({"event": "X\u0000"}, "event"),
        ({"userId": "u\u0000"}, "userId"),
    ],
)
def test_values_the_database_cannot_store_are_item_errors(client, write_key, item, field):
    # given an item PostgreSQL could not store (a NUL character, NaN or Infinity)
    message = {"type": "track", "userId": "u", "event": "X", **item}
    body = {"batch": [{"type": "track", "userId": "u", "event": "Fine"}, message]}

    # when posted
    response = post(client, "/v1/batch", body, key=write_key)

    # then that item is a 400 naming where the value is, never a 500, and the other is kept
    assert response.status_code == 400, response.content
    assert error_fields(response) == {1: field}
    assert list(Event.objects.values_list("name", flat=True)) == ["Fine"]


@pytest.mark.django_db
def test_an_escaped_backslash_before_u0000_is_plain_text(client, write_key):
    # given text that merely looks like a NUL escape once JSON-encoded
    body = {"userId": "u", "event": "X", "properties": {"path": "C:\\u0000"}}

    # when posted, then it is stored as is
    assert post(client, "/v1/track", body, key=write_key).status_code == 200
    assert Event.objects.get().properties == {"path": "C:\\u0000"}


@pytest.mark.django_db
def test_a_large_batch_takes_a_fixed_number_of_queries(
    client, write_key, django_assert_max_num_queries
):
    # given 200 events from 100 people, half of them new
    for n in range(50):
        post(client, "/v1/track", {"userId": f"u-{n}", "event": "Seen"}, key=write_key)
    batch = [
        {"type": kind, "userId": f"u-{n}", "event": "Product Viewed", "messageId": f"{kind}-{n}"}
        for n in range(100)
        for kind in ("track", "page")
    ]

    # when they arrive in one batch, then the queries do not grow with the batch
    with django_assert_max_num_queries(15):
        response = post(client, "/v1/batch", {"batch": batch}, key=write_key)
    assert response.status_code == 200
    assert Event.objects.filter(message_id__startswith="page-").count() == 100


# --- encodings, content types, malformed bodies -------------------------------------------


@pytest.mark.django_db
def test_a_gzip_body_is_accepted(client, write_key):
    # given a gzipped batch, as the SDKs send with gzip on
    body = gzip.compress(json.dumps(shop_batch()).encode())

    # when posted with Content-Encoding: gzip
    response = post(
        client, "/v1/batch", body, key=write_key, headers={"HTTP_CONTENT_ENCODING": "gzip"}
    )

    # then it is stored like a plain one
    assert response.status_code == 200, response.content
    assert Order.objects.filter(external_id="A-100").exists()
    assert Event.objects.count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "encoding", "status", "code"),
    [
        (b"{not json", "", 400, "malformed_json"),
        (b"\xff\xfe", "", 400, "malformed_json"),
        (b"[1, 2]", "", 400, "invalid"),
        (b'{"batch": "nope"}', "", 400, "invalid"),
        (b"plain bytes, not gzip", "gzip", 400, "invalid_gzip"),
        (gzip.compress(b'{"batch": []}')[:-12], "gzip", 400, "invalid_gzip"),
        (b'{"batch": []}', "br", 415, "unsupported_encoding"),
    ],
)
def test_malformed_bodies_answer_json_errors(client, write_key, body, encoding, status, code):
    # when a broken body is posted
    headers = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}
    response = post(client, "/v1/batch", body, key=write_key, headers=headers)

    # then the answer says what is wrong, as JSON
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert response.json()["message"]


@pytest.mark.django_db
def test_a_wrong_content_type_is_415(client, write_key):
    # when XML is posted
    response = post(client, "/v1/batch", b"<batch/>", key=write_key, content_type="application/xml")

    # then the answer is a JSON 415
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


@pytest.mark.django_db
def test_only_post_is_allowed(client, write_key):
    # when the endpoint is fetched with GET, then it is a 405, not a crash
    assert client.get("/v1/batch").status_code == 405


# --- authentication ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_key_as_basic_username_authenticates(client, write_key):
    response = post(client, "/v1/track", {"userId": "u", "event": "X"}, key=write_key)
    assert response.status_code == 200


@pytest.mark.django_db
def test_the_key_as_bearer_authenticates(client, write_key):
    response = post(
        client,
        "/v1/track",
        {"userId": "u", "event": "X"},
        headers={"HTTP_AUTHORIZATION": f"Bearer {write_key}"},
    )
    assert response.status_code == 200


@pytest.mark.django_db
def test_the_write_key_in_the_body_authenticates(client, write_key):
    # given no Authorization header, and the key in the body as analytics.js can send it
    body = {"batch": [{"type": "track", "userId": "u", "event": "X"}], "writeKey": write_key}

    # when posted, then it is accepted and writeKey is not stored anywhere
    response = post(client, "/v1/batch", body)
    assert response.status_code == 200
    assert "writeKey" not in json.dumps(list(Event.objects.values("properties", "context")))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("authorization", "body_key", "status", "code"),
    [
        (None, None, 401, "not_authenticated"),
        ("Basic " + base64.b64encode(b"kp_wrong:").decode(), None, 401, "authentication_failed"),
        ("Bearer kp_wrong", None, 401, "authentication_failed"),
        ("Basic %%%not-base64", None, 401, "not_authenticated"),
        ("Digest abc", None, 401, "not_authenticated"),
        (None, 12345, 401, "not_authenticated"),
        (None, "kp_wrong", 401, "authentication_failed"),
    ],
)
def test_missing_or_wrong_keys_are_401(client, authorization, body_key, status, code):
    # given a request without a valid key
    body: dict = {"batch": [{"type": "track", "userId": "u", "event": "X"}]}
    if body_key is not None:
        body["writeKey"] = body_key
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    # when posted
    response = post(client, "/v1/batch", body, headers=headers)

    # then it is a JSON 401 and nothing is stored
    assert response.status_code == status
    assert response.json()["code"] == code
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_a_read_only_key_is_403(client, read_key):
    response = post(client, "/v1/track", {"userId": "u", "event": "X"}, key=read_key)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_a_revoked_key_is_401(client):
    from crm.services.api_keys import api_key_create, api_key_revoke

    key, raw = api_key_create(name="old", scope="write")
    api_key_revoke(key=key)
    response = post(client, "/v1/track", {"userId": "u", "event": "X"}, key=raw)
    assert response.status_code == 401


# --- limits --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_message_over_32kb_in_a_batch_is_an_item_error(client, write_key):
    # given a batch with one message of 40 KB among small ones
    big = {"type": "track", "userId": "u", "event": "Big", "properties": {"x": "a" * 40_000}}
    body = {"batch": [{"type": "track", "userId": "u", "event": "Small"}, big]}

    # when posted
    response = post(client, "/v1/batch", body, key=write_key)

    # then that item alone is refused as too large
    assert response.status_code == 400
    [error] = response.json()["details"]["errors"]
    assert (error["index"], error["code"]) == (1, "message_too_large")
    assert list(Event.objects.values_list("name", flat=True)) == ["Small"]


@pytest.mark.django_db
def test_a_single_message_over_32kb_is_payload_too_large(client, write_key):
    # when a 40 KB track is posted to /v1/track
    body = {"userId": "u", "event": "Big", "properties": {"x": "a" * 40_000}}
    response = post(client, "/v1/track", body, key=write_key)

    # then it is refused whole
    assert response.status_code == 400
    assert response.json()["code"] == "payload_too_large"
    assert response.json()["message"]


@pytest.mark.django_db
def test_a_batch_over_500kb_is_payload_too_large(client, write_key):
    # given a batch of 20 messages of 30 KB each (each fine alone, 600 KB in all)
    message = {"type": "track", "userId": "u", "event": "X", "properties": {"x": "a" * 30_000}}
    body = {"batch": [message] * 20}

    # when posted, then the whole body is refused
    response = post(client, "/v1/batch", body, key=write_key)
    assert response.status_code == 400
    assert response.json()["code"] == "payload_too_large"
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_a_gzip_bomb_is_refused(client, write_key):
    # given a few KB of gzip that inflates to 5 MB
    inflated = b'{"batch": [], "pad": "' + b"a" * 5_000_000 + b'"}'
    bomb = gzip.compress(inflated)
    assert len(bomb) < 20_000

    # when posted, then it is refused for its inflated size
    response = post(
        client, "/v1/batch", bomb, key=write_key, headers={"HTTP_CONTENT_ENCODING": "gzip"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "payload_too_large"


# --- refunds -------------------------------------------------------------------------------


def order_completed(order_id: str = "A-100", total: float = 40.0, message_id: str = "oc") -> dict:
    return {
        "type": "track",
        "messageId": message_id,
        "userId": "u-1",
        "event": "Order Completed",
        "properties": {"order_id": order_id, "total": total, "currency": "USD"},
    }


def order_refunded(message_id: str, **properties) -> dict:
    return {
        "type": "track",
        "messageId": message_id,
        "userId": "u-1",
        "event": "Order Refunded",
        "properties": {"order_id": "A-100", **properties},
    }


@pytest.mark.django_db
def test_order_refunded_refunds_the_whole_order_once(client, write_key):
    # given a placed order
    post(client, "/v1/batch", {"batch": [order_completed()]}, key=write_key)

    # when "Order Refunded" arrives, twice (an SDK retry)
    body = {"batch": [order_refunded("r1")]}
    first = post(client, "/v1/batch", body, key=write_key)
    second = post(client, "/v1/batch", body, key=write_key)

    # then the order is refunded, once
    assert (first.status_code, second.status_code) == (200, 200)
    order = Order.objects.get(external_id="A-100")
    assert order.status == OrderStatus.REFUNDED
    assert order.refunded_total == Decimal("40")
    assert Refund.objects.count() == 1
    # and the refunded customer is no longer a first-time buyer
    assert order.contact.stage == Stage.SUBSCRIBER


@pytest.mark.django_db
def test_order_refunded_with_a_smaller_total_is_partial(client, write_key):
    # given a placed order of 40
    post(client, "/v1/batch", {"batch": [order_completed()]}, key=write_key)

    # when 15 of it is refunded
    response = post(client, "/v1/batch", {"batch": [order_refunded("r1", total=15)]}, key=write_key)

    # then the order is partially refunded by 15
    assert response.status_code == 200
    order = Order.objects.get(external_id="A-100")
    assert order.status == OrderStatus.PARTIALLY_REFUNDED
    assert order.refunded_total == Decimal("15")


@pytest.mark.django_db
def test_an_order_and_its_refund_in_one_batch(client, write_key):
    # when an order and its refund arrive in the same batch
    body = {"batch": [order_completed(), order_refunded("r1")]}
    response = post(client, "/v1/batch", body, key=write_key)

    # then the refund finds the order
    assert response.status_code == 200, response.content
    assert Order.objects.get(external_id="A-100").status == OrderStatus.REFUNDED


@pytest.mark.django_db
def test_a_second_full_refund_under_a_new_message_id_is_a_no_op(client, write_key):
    # given an order already refunded in full
    post(client, "/v1/batch", {"batch": [order_completed(), order_refunded("r1")]}, key=write_key)

    # when the shop sends "Order Refunded" again under a new messageId
    response = post(client, "/v1/batch", {"batch": [order_refunded("r2")]}, key=write_key)

    # then it is accepted and nothing more is refunded
    assert response.status_code == 200, response.content
    assert Refund.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"order_id": "missing"}, "properties.order_id"),
        ({"total": 500}, "properties.total"),
        ({"total": "lots"}, "properties.total"),
        ({"total": 0}, "properties.total"),
        ({"order_id": None}, "properties.order_id"),
    ],
)
def test_bad_refunds_name_the_field(client, write_key, properties, field):
    # given a placed order of 40
    post(client, "/v1/batch", {"batch": [order_completed()]}, key=write_key)

    # when a refund that cannot apply is sent
    response = post(
        client, "/v1/batch", {"batch": [order_refunded("r1", **properties)]}, key=write_key
    )

    # then it is refused with the field named and the order is untouched
    assert response.status_code == 400, response.content
    assert error_fields(response) == {0: field}
    assert Order.objects.get(external_id="A-100").status == OrderStatus.PLACED


@pytest.mark.django_db
def test_a_refund_without_message_id_is_not_applied_twice(client, write_key):
    # given a placed order and a refund message without a messageId
    post(client, "/v1/batch", {"batch": [order_completed()]}, key=write_key)
    refund = order_refunded("r1", total=10)
    del refund["messageId"]
    refund["timestamp"] = "2026-03-01T10:00:00Z"

    # when the same message is delivered twice
    post(client, "/v1/batch", {"batch": [refund]}, key=write_key)
    post(client, "/v1/batch", {"batch": [copy.deepcopy(refund)]}, key=write_key)

    # then it counts once
    assert Order.objects.get(external_id="A-100").refunded_total == Decimal("10")
    assert Event.objects.filter(name="Order Refunded").count() == 1


# --- identity: anonymous visitors and alias ------------------------------------------------


@pytest.mark.django_db
def test_identify_attaches_the_anonymous_visits(client, write_key):
    # given an anonymous visitor who saw two pages
    anonymous = {
        "batch": [
            {"type": "page", "anonymousId": "anon-1", "messageId": "p1", "name": "Home"},
            {"type": "page", "anonymousId": "anon-1", "messageId": "p2", "name": "Beans"},
        ]
    }
    post(client, "/v1/batch", anonymous, key=write_key)
    assert Event.objects.filter(contact__isnull=True).count() == 2

    # when they sign up: identify with both ids
    identify = {"userId": "u-7", "anonymousId": "anon-1", "traits": {"email": "cy@example.com"}}
    response = post(client, "/v1/identify", identify, key=write_key)

    # then the anonymous pages are the contact's
    assert response.status_code == 200
    contact = Contact.objects.get(external_id="u-7")
    assert contact.events.count() == 2
    # and later anonymous events find the contact too
    post(client, "/v1/page", {"anonymousId": "anon-1", "messageId": "p3"}, key=write_key)
    assert contact.events.count() == 3


@pytest.mark.django_db
def test_a_later_identify_without_an_id_keeps_the_known_ones(client, write_key):
    # given a contact known by user id and email
    first = {"userId": "u-5", "traits": {"email": "fay@example.com", "firstName": "Fay"}}
    post(client, "/v1/identify", first, key=write_key)

    # when later identifies carry only the user id, or only the email
    post(client, "/v1/identify", {"userId": "u-5", "traits": {"plan": "pro"}}, key=write_key)
    by_email = {"anonymousId": "a-5", "traits": {"email": "fay@example.com", "lastName": "Wu"}}
    post(client, "/v1/identify", by_email, key=write_key)

    # then the contact keeps both ids and gathers the traits
    contact = Contact.objects.get()
    assert (contact.external_id, contact.email) == ("u-5", "fay@example.com")
    assert (contact.first_name, contact.last_name) == ("Fay", "Wu")
    assert contact.attributes == {"plan": "pro"}


@pytest.mark.django_db
def test_anonymous_visitors_are_attached_in_a_fixed_number_of_queries(
    client, write_key, django_assert_max_num_queries
):
    # given 100 anonymous visitors with a page view each
    pages = [{"type": "page", "anonymousId": f"a-{n}", "messageId": f"p-{n}"} for n in range(100)]
    post(client, "/v1/batch", {"batch": pages}, key=write_key)

    # when each signs up, all in one batch of tracks carrying both ids
    tracks = [
        {"type": "track", "userId": f"u-{n}", "anonymousId": f"a-{n}", "event": "Signed Up"}
        for n in range(100)
    ]
    with django_assert_max_num_queries(20):
        response = post(client, "/v1/batch", {"batch": tracks}, key=write_key)

    # then every earlier page view is attached, without a query per visitor
    assert response.status_code == 200
    assert not Event.objects.filter(contact__isnull=True).exists()


@pytest.mark.django_db
def test_anonymous_identify_keeps_no_contact_but_is_accepted(client, write_key):
    response = post(
        client, "/v1/identify", {"anonymousId": "a", "traits": {"plan": "x"}}, key=write_key
    )
    assert response.status_code == 200
    assert not Contact.objects.exists()


@pytest.mark.django_db
def test_alias_links_the_previous_id_to_the_user(client, write_key):
    # given an anonymous visitor's page view
    post(client, "/v1/page", {"anonymousId": "anon-2", "messageId": "p1"}, key=write_key)

    # when the site aliases the anonymous id to a user id
    response = post(client, "/v1/alias", {"previousId": "anon-2", "userId": "u-8"}, key=write_key)

    # then the contact exists with the event and the alias
    assert response.status_code == 200, response.content
    contact = Contact.objects.get(external_id="u-8")
    assert list(contact.events.values_list("message_id", flat=True)) == ["p1"]
    assert ContactAlias.objects.filter(value="anon-2", contact=contact).exists()


@pytest.mark.django_db
def test_alias_renames_an_old_user_id(client, write_key):
    # given a contact known by an old user id
    post(
        client,
        "/v1/identify",
        {"userId": "old-id", "traits": {"email": "di@example.com"}},
        key=write_key,
    )

    # when it is aliased to a new user id
    response = post(
        client, "/v1/alias", {"previousId": "old-id", "userId": "new-id"}, key=write_key
    )

    # then the same contact carries the new id
    assert response.status_code == 200
    assert Contact.objects.get(email="di@example.com").external_id == "new-id"


# --- time ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_clock_skew_is_corrected_from_sent_at(client, write_key):
    # given a device whose clock is 2 hours fast: it says it made the event at 12:00 and
    # sent it at 12:05, and we receive it at 10:05 real time
    with time_machine.travel(T0 + timedelta(minutes=5), tick=False):
        body = {
            "batch": [
                {
                    "type": "track",
                    "userId": "u",
                    "event": "X",
                    "messageId": "skewed",
                    "originalTimestamp": "2026-03-02T12:00:00Z",
                }
            ],
            "sentAt": "2026-03-02T12:05:00Z",
        }

        # when it is posted
        post(client, "/v1/batch", body, key=write_key)

    # then the event happened at received - (sent - original) = 10:00
    assert Event.objects.get(message_id="skewed").occurred_at == T0


@pytest.mark.django_db
def test_a_message_timestamp_is_trusted_and_no_timestamp_means_now(client, write_key):
    with time_machine.travel(T0, tick=False):
        post(
            client,
            "/v1/batch",
            {
                "batch": [
                    {
                        "type": "track",
                        "userId": "u",
                        "event": "X",
                        "messageId": "given",
                        "timestamp": "2026-02-01T08:00:00+01:00",
                    },
                    {"type": "track", "userId": "u", "event": "X", "messageId": "none"},
                ]
            },
            key=write_key,
        )

    assert Event.objects.get(message_id="given").occurred_at == datetime(
        2026, 2, 1, 7, 0, tzinfo=UTC
    )
    assert Event.objects.get(message_id="none").occurred_at == T0
