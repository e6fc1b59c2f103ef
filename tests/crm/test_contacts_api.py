"""Contacts API: list with cursor pagination and filters, CRUD, upsert, consent, MEDDIC."""

from datetime import UTC, datetime, timedelta

import pytest

from crm.models import ConsentRecord, Contact, LeadScoreChange, StageChange
from crm.services.consent import consent_record
from tests.factories import ContactFactory, TagFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/contacts/"


def test_create_normalises_the_email_and_records_the_first_stage(api):
    response = api.post(
        URL,
        {
            "email": "  Ann.Lee@Example.COM ",
            "first_name": "Ann",
            "timezone": "Asia/Tokyo",
            "tags": ["vip", "newsletter"],
            "attributes": {"size": "M"},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["email"] == "ann.lee@example.com"
    assert body["stage"] == "subscriber"
    assert sorted(body["tags"]) == ["newsletter", "vip"]
    assert StageChange.objects.filter(contact_id=body["id"], to_stage="subscriber").exists()


def test_email_is_unique_whatever_its_case(api):
    api.post(URL, {"email": "bo@example.com"}, format="json")
    response = api.post(URL, {"email": "BO@example.com"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


def test_stage_cannot_be_set(api):
    response = api.post(URL, {"email": "cy@example.com", "stage": "loyal"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "read_only"


def test_update_merges_attributes_and_null_removes_a_key(api):
    created = api.post(
        URL, {"email": "di@example.com", "attributes": {"a": 1, "b": 2}}, format="json"
    ).json()
    response = api.patch(
        f"{URL}{created['id']}/",
        {"attributes": {"b": None, "c": 3}, "last_name": "Ito"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["attributes"] == {"a": 1, "c": 3}
    assert response.json()["last_name"] == "Ito"


def test_upsert_by_external_id_then_by_email(api):
    first = api.post(
        f"{URL}upsert/", {"external_id": "u-1", "email": "ed@example.com"}, format="json"
    )
    assert first.status_code == 201
    again = api.post(f"{URL}upsert/", {"external_id": "u-1", "first_name": "Ed"}, format="json")
    assert again.status_code == 200
    by_email = api.post(
        f"{URL}upsert/", {"email": "ED@example.com", "phone": "+33 1"}, format="json"
    )
    assert by_email.status_code == 200
    contact = Contact.objects.get()
    assert (contact.first_name, contact.phone, contact.external_id) == ("Ed", "+33 1", "u-1")


def test_delete_erases_the_contact(api):
    created = api.post(URL, {"email": "fa@example.com"}, format="json").json()
    assert api.delete(f"{URL}{created['id']}/").status_code == 204
    contact = Contact.objects.get()  # the row stays for orders, the ledger and the metrics
    assert contact.email is None and contact.erased_at is not None
    assert contact.external_id.startswith("erased:")


def test_filters(api):
    vip = TagFactory(name="vip")
    old = ContactFactory(
        email="old@example.com", stage="loyal", created_at=datetime(2025, 1, 1, tzinfo=UTC)
    )
    old.tags.add(vip)
    ContactFactory(email="new@example.com", stage="subscriber")
    assert [c["email"] for c in api.get(URL, {"stage": "loyal"}).json()["results"]] == [
        "old@example.com"
    ]
    assert [c["email"] for c in api.get(URL, {"tag": "vip"}).json()["results"]] == [
        "old@example.com"
    ]
    assert [c["email"] for c in api.get(URL, {"email": "NEW@example.com"}).json()["results"]] == [
        "new@example.com"
    ]
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert [c["email"] for c in api.get(URL, {"created_after": since}).json()["results"]] == [
        "new@example.com"
    ]


def test_cursor_pagination_walks_every_contact_once(api):
    ContactFactory.create_batch(25)
    seen, url = [], URL + "?page_size=10"
    while url:
        page = api.get(url).json()
        seen += [c["id"] for c in page["results"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) == 25


def test_list_query_count_is_pinned(api, django_assert_max_num_queries):
    for n in range(30):
        contact = ContactFactory()
        contact.tags.add(TagFactory(name=f"t{n % 4}"))
        consent_record(contact=contact, status="granted", source="test")
    # auth (1) + last_used_at touch (≤1) + page (1) + tags prefetch (1)
    with django_assert_max_num_queries(4):
        response = api.get(URL)
    assert len(response.json()["results"]) == 30
    assert {c["email_consent"] for c in response.json()["results"]} == {"granted"}


def test_consent_log_is_appended_and_the_current_status_derived(api):
    contact = ContactFactory()
    api.post(
        f"{URL}{contact.pk}/consent/",
        {"status": "granted", "source": "checkout", "wording_version": "v3"},
        format="json",
        HTTP_USER_AGENT="pytest",
    )
    api.post(
        f"{URL}{contact.pk}/consent/", {"status": "withdrawn", "source": "support"}, format="json"
    )
    log = api.get(f"{URL}{contact.pk}/consent/").json()
    assert [r["status"] for r in log] == ["withdrawn", "granted"]
    assert log[1]["user_agent"] == "pytest"
    assert log[1]["ip"] == "127.0.0.1"
    assert api.get(f"{URL}{contact.pk}/").json()["email_consent"] == "withdrawn"
    assert ConsentRecord.objects.count() == 2


def test_consent_rejects_a_bad_status(api):
    contact = ContactFactory()
    response = api.post(f"{URL}{contact.pk}/consent/", {"status": "maybe"}, format="json")
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "status"


def test_meddic_scorecard_through_the_api_is_scored_and_audited(api):
    contact = ContactFactory()
    response = api.patch(
        f"{URL}{contact.pk}/meddic/",
        {
            "metrics_status": 2,
            "champion_status": "CONFIRMED",
            "identified_pain_status": 1,
            "identified_pain_note": "churn in Q3",
        },
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["score"] == round(100 * 5 / 12)
    changes = LeadScoreChange.objects.filter(scorecard__contact=contact)
    assert changes.count() == 4
    assert {c.changed_via for c in changes} == {"api:tests"}
    bad = api.patch(f"{URL}{contact.pk}/meddic/", {"metrics_status": 7}, format="json")
    assert bad.status_code == 400
    assert bad.json()["details"]["field"] == "metrics_status"
