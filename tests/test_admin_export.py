"""CSV export from the admin (crm.admin_export): the "Download as CSV" action on the
selected rows or on all the changelist's filters show, streamed, every cell through the
spreadsheet-formula guard, for anyone who may view the list; the same queries for one
row as for many."""

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import Message
from crm import clock
from crm.models import Contact, SegmentMembership
from crm.services.roles import roles_sync
from crm.services.segments import segment_members_add, segment_save
from loyalty.services.ledger import ledger_grant
from tests.factories import ContactFactory, OrderFactory

pytestmark = pytest.mark.django_db


def download(client, url, *, pks=None, query=""):
    data = {"action": "download_as_csv"}
    if pks is None:
        data.update(select_across="1", _selected_action=["0"])
    else:
        data["_selected_action"] = [str(pk) for pk in pks]
    response = client.post(f"{url}{query}", data)
    assert response.status_code == 200 and response.streaming, response
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_contacts_export_what_the_filters_show_with_formulas_made_inert(staff_client):
    ContactFactory(email="ada@example.com", first_name="=HYPERLINK(1)", stage="customer")
    ContactFactory(email="bo@example.com", stage="customer")
    ContactFactory(email="cy@example.com", stage="subscriber")

    rows = download(staff_client, "/admin/crm/contact/", query="?stage__exact=customer")

    assert sorted(r["email"] for r in rows) == ["ada@example.com", "bo@example.com"]
    assert next(r for r in rows if r["email"] == "ada@example.com")["first_name"] == (
        "'=HYPERLINK(1)"
    )


def test_orders_messages_ledger_and_segment_members_export_their_rows(staff_client):
    ada = ContactFactory(email="ada@example.com")
    order = OrderFactory(contact=ada, external_id="o-1")
    now = clock.now()
    message = Message.objects.create(
        contact=ada,
        idempotency_key="m-1",
        category="marketing",
        subject="Hello",
        to_email=ada.email,
        created_at=now,
    )
    entry, _ = ledger_grant(contact=ada, unit="EUR", amount=5, reason="Sorry", key="k")
    segment = segment_save(name="VIPs", kind="static")
    segment_members_add(segment=segment, contact_ids=[ada.pk])
    member = SegmentMembership.objects.get()

    (row,) = download(staff_client, "/admin/crm/order/", pks=[order.pk])
    assert (row["order_id"], row["contact_email"]) == ("o-1", ada.email)
    assert Decimal(row["total"]) == 50
    (row,) = download(staff_client, "/admin/campaigns/message/", pks=[message.pk])
    assert (row["to_email"], row["subject"], row["status"]) == (ada.email, "Hello", "queued")
    (row,) = download(staff_client, "/admin/loyalty/ledgerentry/", pks=[entry.pk])
    assert (row["email"], row["unit"], row["amount"], row["reason"]) == (
        ada.email,
        "EUR",
        "5.0000",
        "Sorry",
    )
    (row,) = download(staff_client, "/admin/crm/segmentmembership/", pks=[member.pk])
    assert (row["segment"], row["email"]) == ("VIPs", ada.email)


def test_viewing_and_the_address_permission_are_needed_and_without_them_no_download(
    client, django_user_model
):
    ContactFactory(email="ada@example.com")
    reader = django_user_model.objects.create_user("r", "r@example.com", is_staff=True)
    reader.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_contact", "download_addresses"])
    )
    client.force_login(reader)
    assert [r["email"] for r in download(client, "/admin/crm/contact/")] == ["ada@example.com"]

    clerk = django_user_model.objects.create_user("c", "c@example.com", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(clerk)
    answer = client.post("/admin/crm/order/", {"action": "download_as_csv", "select_across": "1"})
    assert not getattr(answer, "streaming", False)
    assert "download_as_csv" not in client.get("/admin/crm/order/").content.decode()
    clerk.user_permissions.add(Permission.objects.get(codename="download_addresses"))
    clerk = django_user_model.objects.get(pk=clerk.pk)  # (permissions are cached per user)
    client.force_login(clerk)
    assert "download_as_csv" in client.get("/admin/crm/order/").content.decode()
    assert "download_as_csv" not in client.get("/admin/crm/contact/").content.decode()


def test_an_export_costs_the_same_queries_for_one_contact_as_for_many(staff_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            download(staff_client, "/admin/crm/contact/")
        return len(captured)

    ContactFactory()
    one = queries()
    for _ in range(20):
        ContactFactory()
    assert Contact.objects.count() == 21
    assert queries() == one


def test_the_download_button_takes_the_changelists_filters(staff_client):
    ContactFactory(email="ada@example.com", stage="customer")
    ContactFactory(email="bo@example.com", stage="subscriber")

    page = staff_client.get("/admin/crm/contact/", {"stage__exact": "customer"})
    assert '<a href="/admin/crm/contact/csv/?stage__exact=customer"' in page.content.decode()

    response = staff_client.get("/admin/crm/contact/csv/", {"stage__exact": "customer"})
    assert response.streaming
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["email"] for r in rows] == ["ada@example.com"]
    for url in ("/admin/crm/order/", "/admin/campaigns/message/", "/admin/loyalty/ledgerentry/"):
        assert f'<a href="{url}csv/"' in staff_client.get(url).content.decode()
    assert (
        "/admin/crm/segmentmembership/csv/"
        in staff_client.get("/admin/crm/segmentmembership/").content.decode()
    )


def test_the_download_button_needs_the_view_permission(client, django_user_model):
    clerk = django_user_model.objects.create_user("c", "c@example.com", is_staff=True)
    client.force_login(clerk)
    assert client.get("/admin/crm/order/csv/").status_code == 403


def test_a_list_of_addresses_downloads_only_with_its_own_permission(client, django_user_model):
    """Reading a page of contacts is not taking every address: the analyst reads the lists
    but downloads none of them; marketers and support may (crm.download_addresses)."""
    roles_sync()
    ContactFactory(email="listed@example.com")
    for role, allowed in (("analyst", False), ("marketer", True), ("support", True)):
        user = django_user_model.objects.create_user(role, is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        page = client.get("/admin/crm/contact/")
        assert page.status_code == 200
        assert ("/admin/crm/contact/csv/" in page.content.decode()) is allowed, role
        assert client.get("/admin/crm/contact/csv/").status_code == (200 if allowed else 403)
        chosen = client.post(
            "/admin/crm/contact/",
            {
                "action": "download_as_csv",
                "_selected_action": list(Contact.objects.values_list("pk", flat=True)),
            },
        )
        assert (chosen.get("Content-Type", "").startswith("text/csv")) is allowed, role
