"""Staff screens: the contact list (search, filters, pinned queries), the timeline, CSV
import with progress and an error report, API keys shown once, MEDDIC edits audited."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from crm.models import ApiKey, Contact, ImportJob, LeadScoreChange
from crm.services.consent import consent_record
from crm.services.contacts import Identity
from crm.services.events import EventIn, events_ingest
from crm.services.orders import OrderIn, orders_place
from tests.factories import ContactFactory, TagFactory

pytestmark = pytest.mark.django_db


def test_contact_changelist_queries_are_pinned(staff_client, django_assert_max_num_queries):
    for n in range(60):
        contact = ContactFactory()
        contact.tags.add(TagFactory(name=f"tag{n % 5}"))
        consent_record(contact=contact, status="granted")
    # session, user, page, tags prefetch, filter choices (tags, source, channel), savepoints
    with django_assert_max_num_queries(12):
        response = staff_client.get("/admin/crm/contact/")
    assert response.status_code == 200
    assert response.content.count(b"granted") >= 50


def test_search_and_filters(staff_client):
    ContactFactory(email="findme@example.com", first_name="Zelda", stage="loyal")
    ContactFactory(email="other@example.com", stage="subscriber")
    found = staff_client.get("/admin/crm/contact/", {"q": "zelda"})
    assert b"findme@example.com" in found.content and b"other@example.com" not in found.content
    loyal = staff_client.get("/admin/crm/contact/", {"stage__exact": "loyal"})
    assert b"findme@example.com" in loyal.content and b"other@example.com" not in loyal.content
    never = staff_client.get("/admin/crm/contact/", {"consent": "none"})
    assert b"findme@example.com" in never.content


def test_contact_page_shows_the_timeline_newest_first(staff_client):
    now = datetime.now(UTC)
    orders_place(
        [
            OrderIn(
                external_id="T-1",
                identity=Identity(email="tim@example.com"),
                total=Decimal("20"),
                currency="USD",
                ordered_at=now - timedelta(days=2),
                lines=[],
                attributes={},
            )
        ]
    )
    events_ingest(
        [
            EventIn(
                name="Product Viewed",
                identity=Identity(email="tim@example.com"),
                properties={"product_id": "SKU-9"},
                occurred_at=now - timedelta(hours=1),
                message_id="tv1",
            )
        ]
    )
    contact = Contact.objects.get(email="tim@example.com")
    consent_record(contact=contact, status="withdrawn", source="preference center")
    page = staff_client.get(f"/admin/crm/contact/{contact.pk}/change/").content.decode()
    page = page[page.index("<h2>Timeline") :]
    positions = [
        page.index(text)
        for text in (
            "Consent withdrawn",
            "Stage: Subscriber → First-time customer",
            "Stage: — → Subscriber",
            "Product Viewed",
            "Order T-1",
        )
    ]
    assert positions == sorted(positions)


def test_empty_timeline_says_so(staff_client):
    contact = ContactFactory()
    page = staff_client.get(f"/admin/crm/contact/{contact.pk}/change/").content.decode()
    assert "Stage: — → Subscriber" not in page or "Nothing has happened" in page


def test_adding_a_contact_in_the_admin_goes_through_the_service(staff_client):
    response = staff_client.post(
        "/admin/crm/contact/add/",
        {
            "email": "New.Person@Example.com",
            "external_id": "",
            "first_name": "New",
            "last_name": "",
            "phone": "",
            "locale": "",
            "timezone": "Europe/Paris",
            "birthday": "",
            "attributes": "{}",
            "source": "",
            "channel": "",
            "scorecard-TOTAL_FORMS": "0",
            "scorecard-INITIAL_FORMS": "0",
            "scorecard-MIN_NUM_FORMS": "0",
            "scorecard-MAX_NUM_FORMS": "1",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    contact = Contact.objects.get()
    assert contact.email == "new.person@example.com"
    assert contact.source == "admin"
    assert contact.stage_changes.get().to_stage == "subscriber"


def test_invalid_timezone_in_the_admin_form_is_refused(staff_client):
    response = staff_client.post(
        "/admin/crm/contact/add/",
        {
            "email": "tz@example.com",
            "timezone": "Nowhere/Land",
            "attributes": "{}",
            "scorecard-TOTAL_FORMS": "0",
            "scorecard-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert b"IANA time zone" in response.content


def test_meddic_edits_in_the_admin_are_recorded_with_the_user(staff_client):
    contact = ContactFactory(email="lead@example.com")
    data = {
        "email": "lead@example.com",
        "external_id": "",
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "phone": "",
        "locale": "",
        "timezone": contact.timezone,
        "birthday": "",
        "attributes": "{}",
        "source": "",
        "channel": "",
        "scorecard-TOTAL_FORMS": "1",
        "scorecard-INITIAL_FORMS": "0",
        "scorecard-MIN_NUM_FORMS": "0",
        "scorecard-MAX_NUM_FORMS": "1",
        "scorecard-0-contact": str(contact.pk),
    }
    for name in (
        "metrics",
        "economic_buyer",
        "decision_criteria",
        "decision_process",
        "identified_pain",
        "champion",
    ):
        data[f"scorecard-0-{name}_status"] = "2" if name == "economic_buyer" else "0"
        data[f"scorecard-0-{name}_note"] = "CFO signs" if name == "economic_buyer" else ""
    response = staff_client.post(f"/admin/crm/contact/{contact.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    change = LeadScoreChange.objects.get(field="economic_buyer_status")
    assert (change.old_value, change.new_value, change.changed_by.username) == ("0", "2", "staff")
    assert contact.scorecard.score == round(100 * 2 / 12)
    filtered = staff_client.get("/admin/crm/contact/", {"lead_score": "low"})
    assert b"lead@example.com" in filtered.content


def test_csv_import_from_the_admin_reports_bad_rows(
    staff_client, django_capture_on_commit_callbacks
):
    csv_text = (
        "email,first_name,timezone,tags,consent,shoe_size\n"
        "a@example.com,Ann,Europe/Paris,vip,granted,38\n"
        "broken-email,Bob,,,,\n"
        "c@example.com,Cy,Mars/Base,,,\n"
        'd@example.com,Di,,"vip,new",withdrawn,41\n'
    )
    upload = SimpleUploadedFile("contacts.csv", csv_text.encode(), content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post("/admin/crm/contact/import/", {"file": upload})
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert (job.status, job.created_count, job.error_count, job.processed_rows) == ("done", 2, 2, 4)
    assert [(e["row"], e["field"]) for e in job.errors] == [(3, "email"), (4, "timezone")]
    page = staff_client.get(response["Location"]).content.decode()
    assert "Row errors (2)" in page and "Mars/Base" in page
    report = staff_client.get(f"/admin/crm/importjob/{job.pk}/errors.csv").content.decode()
    assert report.splitlines()[0] == "line,field,message"
    ann = Contact.objects.get(email="a@example.com")
    assert ann.attributes == {"shoe_size": "38"}
    assert [t.name for t in Contact.objects.get(email="d@example.com").tags.all()] == ["new", "vip"]


def test_api_key_is_shown_once_and_stored_hashed(staff_client):
    response = staff_client.post(
        "/admin/crm/apikey/add/", {"name": "shopify", "scope": "write"}, follow=True
    )
    raw = re.search(r"<code>(kp_[^<]+)</code>", response.content.decode()).group(1)
    key = ApiKey.objects.get()
    assert raw.startswith(key.prefix) and raw not in key.key_hash
    again = staff_client.get(f"/admin/crm/apikey/{key.pk}/change/").content.decode()
    assert raw not in again


@pytest.mark.parametrize(
    "page",
    [
        "event",
        "order",
        "product",
        "stagechange",
        "consentrecord",
        "importjob",
        "leadscorecard",
        "apikey",
        "tag",
    ],
)
def test_every_list_page_renders_empty_and_full(staff_client, page):
    assert staff_client.get(f"/admin/crm/{page}/").status_code == 200
