"""POST /api/v1/events/: one event or up to 1,000, each validated on its own, stored once
per (source, message_id); unknown contacts created from the email or external_id."""

import pytest

from crm import bus
from crm.models import Contact, Event

pytestmark = pytest.mark.django_db
URL = "/api/v1/events/"


def event(n: int, **extra) -> dict:
    return {
        "name": "Product Viewed",
        "email": f"buyer{n % 3}@example.com",
        "properties": {"product_id": f"SKU-{n}"},
        "message_id": f"m-{n}",
        "occurred_at": "2026-03-01T10:00:00Z",
        **extra,
    }


def test_a_batch_is_stored_and_unknown_contacts_are_created(api):
    response = api.post(URL, [event(n) for n in range(10)], format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["duplicates"], body["errors"]) == (10, 0, 0)
    assert Event.objects.count() == 10
    assert Contact.objects.count() == 3
    assert Contact.objects.filter(source="api").count() == 3


def test_the_same_batch_twice_stores_each_event_once(api):
    batch = [event(n) for n in range(20)]
    api.post(URL, batch, format="json")
    again = api.post(URL, batch, format="json").json()
    assert (again["created"], again["duplicates"]) == (0, 20)
    assert Event.objects.count() == 20


def test_a_repeat_inside_one_batch_is_a_duplicate(api):
    body = api.post(URL, [event(1), event(1)], format="json").json()
    assert [r["status"] for r in body["results"]] == ["created", "duplicate"]
    assert Event.objects.count() == 1


def test_one_malformed_item_is_reported_by_index_and_field_and_the_others_kept(api):
    batch = [event(n) for n in range(5)]
    batch[2]["occurred_at"] = "last tuesday"
    batch[4] = {"name": "Product Viewed", "email": "not-an-email", "message_id": "x"}
    response = api.post(URL, batch, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["errors"]) == (3, 2)
    errors = {r["index"]: r for r in body["results"] if r["status"] == "error"}
    assert errors[2]["field"] == "[2].occurred_at"
    assert errors[4]["field"] == "[4].email"
    assert "not-an-email" in errors[4]["message"]
    assert Event.objects.count() == 3


def test_a_single_event_answers_201_then_200_for_the_duplicate(api):
    first = api.post(URL, event(7), format="json")
    assert first.status_code == 201
    assert first.json()["status"] == "created"
    second = api.post(URL, event(7), format="json")
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"


def test_the_same_message_id_from_two_sources_is_two_events(api):
    api.post(URL, [event(1, source="shopify"), event(1, source="app")], format="json")
    assert Event.objects.count() == 2


def test_anonymous_events_are_kept_without_a_contact(api):
    api.post(
        URL, {"name": "Page Viewed", "anonymous_id": "anon-1", "message_id": "a1"}, format="json"
    )
    stored = Event.objects.get()
    assert stored.contact is None
    assert stored.anonymous_id == "anon-1"


def test_events_are_announced_on_the_bus(api, django_capture_on_commit_callbacks):
    seen = []
    bus.subscribe(bus.EventIngested, seen.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            api.post(URL, [event(1), event(2), event(1)], format="json")
    finally:
        bus.unsubscribe(bus.EventIngested, seen.append)
    assert sorted(m.name for m in seen) == ["Product Viewed", "Product Viewed"]


def test_more_than_1000_items_is_refused(api):
    response = api.post(URL, [event(n) for n in range(1001)], format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "batch_too_large"
    assert Event.objects.count() == 0


def test_the_list_is_readable_with_a_read_key(read_api, api):
    api.post(URL, [event(n) for n in range(3)], format="json")
    response = read_api.get(URL, {"name": "Product Viewed"})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 3


def test_batch_ingestion_query_count_does_not_grow_with_the_batch(
    api, django_assert_max_num_queries
):
    api.post(URL, [event(n) for n in range(3)], format="json")  # contacts exist now
    with django_assert_max_num_queries(12):
        api.post(URL, [event(n) for n in range(100, 400)], format="json")
