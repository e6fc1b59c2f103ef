"""The official Segment SDK (segment-analytics-python) delivers to a running Keepers: the
write key is a Keepers API key and `host` is the Keepers URL, nothing else changes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from segment.analytics import Client, request

from crm.models import Contact, Event, Order, Stage


@pytest.fixture(autouse=True)
def sdk_connections_closed():
    """The SDK keeps one module-wide HTTP session alive; the live server's thread serving
    it would hold its database connection open and block dropping the test database."""
    yield
    request._session.close()


def deliver(client: Client) -> None:
    client.identify(
        "sdk-user-1",
        {"email": "Eve@Example.com", "firstName": "Eve", "plan": "gold"},
        message_id="sdk-identify",
    )
    client.track("sdk-user-1", "Product Viewed", {"product_id": "beans-1"}, message_id="sdk-view")
    client.track(
        "sdk-user-1",
        "Order Completed",
        {
            "order_id": "SDK-1",
            "total": 25.5,
            "currency": "USD",
            "products": [{"product_id": "beans-1", "price": 12.75, "quantity": 2}],
        },
        message_id="sdk-order",
    )
    client.flush()


def assert_delivered() -> None:
    contact = Contact.objects.get(external_id="sdk-user-1")
    assert contact.email == "eve@example.com"
    assert contact.first_name == "Eve"
    assert contact.attributes == {"plan": "gold"}
    assert set(Event.objects.filter(contact=contact).values_list("message_id", "name")) == {
        ("sdk-view", "Product Viewed"),
        ("sdk-order", "Order Completed"),
    }
    order = Order.objects.get(external_id="SDK-1")
    assert (order.contact_id, order.total) == (contact.pk, Decimal("25.5"))
    assert order.lines.get().quantity == 2
    contact.refresh_from_db()
    assert contact.stage == Stage.FIRST_TIME


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_the_segment_sdk_delivers_to_keepers(live_server, write_key, gzip):
    # given the SDK pointed at Keepers with a write key; sync_mode posts each call at once
    # and raises on any answer but 2xx, so a refusal fails the test
    client = Client(
        write_key=write_key, host=live_server.url, sync_mode=True, gzip=gzip, max_retries=0
    )

    # when the shop identifies a customer, tracks a view and a completed order
    deliver(client)

    # then Keepers has the contact, the events and the order, and she is a first-time buyer
    assert_delivered()


@pytest.mark.django_db(transaction=True)
def test_the_segment_sdk_sees_a_wrong_key_as_an_api_error(live_server):
    from segment.analytics.request import APIError

    # given the SDK with a key Keepers does not know
    client = Client(write_key="kp_not-a-key", host=live_server.url, sync_mode=True)

    # when it sends, then it gets Keepers' JSON error as an APIError (not "unknown")
    with pytest.raises(APIError) as raised:
        client.track("u", "Seen")
    assert (raised.value.status, raised.value.code) == (401, "authentication_failed")
    assert not Event.objects.exists()
