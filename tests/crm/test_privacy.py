"""Issue 15, privacy: export and erase one contact, from the admin, the API and the
command, for a contact with every kind of related row — who referred a friend, redeemed a
bound coupon, answered a survey, bounced, and has orders (lines, a refund), events,
messages, consent, ledger entries, an alias, an idempotent API write, an import error, a
webhook payload and an admin history entry. After the erase a search of every column of
every table (introspected from the database) finds neither the address nor the name, and
the ledger, the orders and the metrics read what they read before."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from io import StringIO

import pytest
from anymail.signals import AnymailTrackingEvent, EventType
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum

from campaigns.models import DeliveryEvent, Message, Suppression, Survey, WebhookDelivery
from campaigns.services.delivery import delivery_event_record
from campaigns.services.sending import message_skip_reason
from campaigns.services.surveys import survey_answer, survey_link
from crm.models import ConsentRecord, Contact, IdempotencyRecord, ImportJob, Order
from crm.services.consent import consent_record
from crm.services.contacts import contact_create
from crm.services.metrics import metrics_summary
from crm.services.orders import order_refund
from loyalty.models import LedgerEntry, Referral
from loyalty.services.coupons import coupon_create, coupon_redeem
from loyalty.services.ledger import ledger_grant
from loyalty.services.referrals import referral_attach, referral_code_for

EMAIL = "zephyrine.quill@example.com"
FIRST, LAST = "Zephyrine", "Quillfeather"
FRIEND = "friend.of.z@example.com"


def rich_contact(api) -> Contact:
    """The contact of the acceptance test, each row made the way Keepers makes it."""
    response = api.post(
        "/api/v1/contacts/",
        {
            "email": EMAIL,
            "first_name": FIRST,
            "last_name": LAST,
            "phone": "+33 6 12 34 56 78",
            "attributes": {"nickname": f"{FIRST} Q", "email_work": "zq@work.example"},
            "tags": ["vip"],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    contact = Contact.objects.get(email=EMAIL)
    consent_record(
        contact=contact,
        status="granted",
        source="form",
        ip="203.0.113.9",
        user_agent="Mozilla/5.0 Zephyrine's phone",
        wording_version="v3",
    )
    # events, with identity in properties and context, and an anonymous id (an alias)
    response = api.post(
        "/api/v1/events/",
        {
            "email": EMAIL,
            "anonymous_id": "anon-zq-1",
            "name": "Product Viewed",
            "message_id": "ev-zq-1",
            "properties": {"product_id": "p1", "note": f"for {FIRST} {LAST}"},
            "context": {"ip": "203.0.113.9", "traits": {"email": EMAIL}},
        },
        format="json",
    )
    assert response.status_code in (200, 201, 207), response.content
    # orders with lines, one refunded in part
    for n, total in ((1, "80.00"), (2, "40.00")):
        response = api.post(
            "/api/v1/orders/",
            {
                "external_id": f"zq-order-{n}",
                "email": EMAIL,
                "total": total,
                "currency": "USD",
                "ordered_at": f"2026-0{n}-10T10:00:00Z",
                "items": [{"product_id": "p1", "name": "Teapot", "quantity": 1, "price": total}],
            },
            format="json",
        )
        assert response.status_code in (200, 201), response.content
    order_refund(
        order_external_id="zq-order-1", amount=Decimal("10.00"), reason=f"{FIRST} changed her mind"
    )
    # ledger
    ledger_grant(contact=contact, unit="points", amount=120, reason="Welcome", key="welcome")
    # referred a friend
    friend = contact_create(email=FRIEND, first_name="Fern")
    code = referral_code_for(contact).code
    assert referral_attach(friend=friend, code=code, channel="form") is not None
    ledger_grant(
        contact=friend,
        unit="points",
        amount=10,
        reason=f"Referred by {FIRST} {LAST}",
        key="referred",
    )
    # a bound coupon, redeemed
    coupon = coupon_create(kind="percent", value=10, contact=contact)
    coupon_redeem(
        code=coupon.code, order_ref="zq-order-2", contact=contact, order_total="40", currency="USD"
    )
    # a message that bounced (a hard bounce: the address is suppressed)
    message = Message.objects.create(
        contact=contact,
        category="marketing",
        idempotency_key="zq-msg-1",
        to_email=EMAIL,
        subject=f"{FIRST}, your teapot",
        html=f"<p>Hello {FIRST} {LAST}</p>",
        text=f"Hello {FIRST} {LAST}",
        status=Message.Status.SENT,
        esp_message_id="esp-zq-1",
        created_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        sent_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
    )
    delivery_event_record(
        event=AnymailTrackingEvent(
            event_type=EventType.BOUNCED,
            message_id="esp-zq-1",
            recipient=EMAIL,
            event_id="bounce-zq-1",
            timestamp=dt.datetime(2026, 3, 1, 1, tzinfo=dt.UTC),
            description=f"550 5.1.1 <{EMAIL}>: user unknown",
            esp_event={"bounce": {"bounceType": "Permanent"}},
        ),
        esp_name="Amazon SES",
    )
    assert Suppression.objects.filter(email=EMAIL).exists()
    # a survey answered (through its signed link), with a comment
    survey = Survey.objects.create(name="Delivery", kind="nps", question="Recommend us?")
    token = survey_link(survey, contact, 9, ref=f"m{message.pk}").rstrip("/").split("/")[-1]
    survey_answer(token=token, comment=f"Lovely — {FIRST}")
    # an idempotent API write's stored response (as crm.services.idempotency keeps it)
    IdempotencyRecord.objects.create(
        scope="campaigns:enroll",
        key="enroll-zq",
        request_hash="0" * 64,
        response={"results": [{"email": EMAIL, "enrolled": True}]},
        status_code=200,
    )
    # logs Keepers writes: an import error, a webhook payload, the admin's history
    ImportJob.objects.create(
        kind="contacts",
        file="imports/x.csv",
        errors=[{"row": 3, "field": "email", "message": f"'{EMAIL}' is already taken"}],
    )
    WebhookDelivery.objects.create(
        url="https://hooks.example/x",
        payload={"contact": {"email": EMAIL, "first_name": FIRST}},
        idempotency_key="wh-zq",
        last_response=f'{{"error": "no customer {EMAIL}"}}',  # the integrator's answer
        created_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
    )
    admin_user = User.objects.create_user("clerk")
    LogEntry.objects.create(
        user=admin_user,
        content_type=ContentType.objects.get_for_model(Contact),
        object_id=str(contact.pk),
        object_repr=str(contact),
        action_flag=CHANGE,
        change_message=f"Changed last name to {LAST}.",
    )
    return contact


def mentions(*needles: str) -> dict[str, int]:
    """Every column of every table in the database (introspected), as text, searched
    case-insensitively for each needle: {"table.column": hits}."""
    found: dict[str, int] = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            columns = connection.introspection.get_table_description(cursor, table)
            for column in columns:
                name = connection.ops.quote_name(column.name)
                cast = f"LOWER(CAST({name} AS TEXT))"
                for needle in needles:
                    cursor.execute(
                        f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)} "
                        f"WHERE {cast} LIKE %s",
                        [f"%{needle.lower()}%"],
                    )
                    hits = cursor.fetchone()[0]
                    if hits:
                        found[f"{table}.{column.name} ({needle})"] = hits
    return found


def figures(contact: Contact) -> dict:
    start, end = dt.date(2026, 1, 1), dt.date(2026, 12, 31)
    return {
        "ledger": list(
            LedgerEntry.objects.values("contact_id", "unit")
            .annotate(total=Sum("amount"), left=Sum("remaining"))
            .order_by("contact_id", "unit")
        ),
        "orders": list(
            Order.objects.order_by("pk").values_list(
                "external_id", "contact_id", "total", "refunded_total", "status"
            )
        ),
        "metrics": json.loads(json.dumps(metrics_summary(start, end), default=str)),
        "referrals": list(Referral.objects.values_list("referrer_id", "friend_id", "status")),
        "consent": ConsentRecord.objects.filter(contact=contact).count(),
    }


NEEDLES = (EMAIL, FIRST, LAST, "zq@work.example", "203.0.113.9", "anon-zq-1")


def test_the_search_sees_the_person_everywhere_before_the_erase(contact):
    """The search itself: before the erase it finds the person in every kind of row."""
    tables = {hit.split(".")[0] for hit in mentions(*NEEDLES)}
    assert tables >= {
        "crm_contact",
        "crm_contactalias",
        "crm_consentrecord",
        "crm_event",
        "crm_refund",
        "crm_idempotencyrecord",
        "crm_importjob",
        "campaigns_message",
        "campaigns_deliveryevent",
        "campaigns_suppression",
        "campaigns_surveyanswer",
        "campaigns_webhookdelivery",
        "loyalty_ledgerentry",
        "django_admin_log",
    }, tables


def assert_erased(contact: Contact, before: dict) -> None:
    found = mentions(*NEEDLES)
    assert found == {}, found
    contact.refresh_from_db()
    assert contact.erased_at is not None and contact.email is None
    after = figures(contact)
    after["metrics"].pop("generated_at", None)
    before["metrics"].pop("generated_at", None)
    assert after == before
    # the address stays suppressed, by its hash
    digest = hashlib.sha256(EMAIL.encode()).hexdigest()  # of the normalised address
    assert Suppression.objects.filter(email_hash=digest, lifted_at=None).exists()
    probe = Message(contact_id=contact.pk, to_email=EMAIL.upper(), category="transactional")
    assert message_skip_reason(probe).startswith("suppressed")
    # the friend keeps their referral, the coupon its redemption, the consent its proof
    assert Referral.objects.get().referrer_id == contact.pk
    record = ConsentRecord.objects.get(contact=contact)
    assert (record.status, record.wording_version, record.ip, record.user_agent) == (
        "granted",
        "v3",
        None,
        "",
    )
    assert DeliveryEvent.objects.get().event_type == "bounced"


def assert_export(document: dict) -> None:
    assert document["format"] == "keepers.contact-export/1"
    assert document["contact"]["email"] == EMAIL
    assert document["contact"]["first_name"] == FIRST
    assert [a["value"] for a in document["aliases"]] == ["anon-zq-1"]
    assert document["consent"][0]["wording_version"] == "v3"
    assert {e["name"] for e in document["events"]} >= {"Product Viewed", "Survey Answered"}
    orders = {o["external_id"]: o for o in document["orders"]}
    assert set(orders) == {"zq-order-1", "zq-order-2"}
    assert orders["zq-order-1"]["lines"][0]["name"] == "Teapot"
    assert Decimal(str(orders["zq-order-1"]["refunds"][0]["amount"])) == Decimal("10")
    assert document["stage_history"]
    campaigns, loyalty = document["campaigns"], document["loyalty"]
    assert campaigns["messages"][0]["html"] == f"<p>Hello {FIRST} {LAST}</p>"
    assert campaigns["delivery_events"][0]["event_type"] == "bounced"
    assert campaigns["suppressions"][0]["reason"] == "hard_bounce"
    assert campaigns["survey_answers"][0]["score"] == 9
    assert {e["reason"] for e in loyalty["ledger"]} >= {"Welcome"}
    assert loyalty["coupon_redemptions"][0]["order_ref"] == "zq-order-2"
    assert loyalty["coupons"][0]["uses"] == 1
    assert len(loyalty["referrals_made"]) == 1
    assert loyalty["referral_code"]


@pytest.fixture
def contact(api, settings, django_capture_on_commit_callbacks):
    settings.KEEPERS_BASE_CURRENCY = "USD"
    with django_capture_on_commit_callbacks(execute=True):
        return rich_contact(api)


# ---------------------------------------------------------------------------------------
# the reproduced defects


def test_api_delete_of_a_referrer_with_a_used_bound_coupon_erases_instead_of_500(api, contact):
    # On the old code: ProtectedError (Referral.code, CouponRedemption.coupon) → 500.
    before = figures(contact)
    response = api.delete(f"/api/v1/contacts/{contact.pk}/")
    assert response.status_code == 204, response.content
    assert_erased(contact, before)
    # erasing again is harmless
    assert api.delete(f"/api/v1/contacts/{contact.pk}/").status_code == 204


def test_api_export(api, contact):
    response = api.get(f"/api/v1/contacts/{contact.pk}/export/")
    assert response.status_code == 200, response.content
    assert response["Content-Disposition"] == f'attachment; filename="contact-{contact.pk}.json"'
    assert_export(response.json())


def test_api_export_needs_a_write_key(read_api, contact):
    response = read_api.get(f"/api/v1/contacts/{contact.pk}/export/")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_api_export_and_erase_are_in_the_schema(api):
    paths = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert "get" in paths["/api/v1/contacts/{id}/export/"]
    assert "204" in paths["/api/v1/contacts/{id}/"]["delete"]["responses"]


def test_command_export_and_erase(contact, tmp_path):
    out = tmp_path / "export.json"
    call_command("contact_export", EMAIL, output=str(out))
    assert_export(json.loads(out.read_text()))
    stdout = StringIO()
    call_command("contact_export", str(contact.pk), stdout=stdout)
    assert json.loads(stdout.getvalue())["contact"]["id"] == contact.pk

    before = figures(contact)
    call_command("contact_erase", str(contact.pk), yes=True, stdout=StringIO())
    assert_erased(contact, before)


def test_command_refuses_an_unknown_contact(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No contact"):
        call_command("contact_erase", "nobody@example.com", yes=True)


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@keepers.test", "pw")


def test_admin_export_and_erase_as_superuser(client, superuser, contact):
    # On the old code the superuser's delete page answered 403 (orders, consent, ledger).
    client.force_login(superuser)
    page = client.get(f"/admin/crm/contact/{contact.pk}/change/")
    assert page.status_code == 200
    assert b"Export data" in page.content and b"Erase" in page.content

    response = client.get(f"/admin/crm/contact/{contact.pk}/export/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert_export(json.loads(response.content))

    # Django's delete page leads to the erase page, which asks for confirmation
    assert client.get(f"/admin/crm/contact/{contact.pk}/delete/").url.endswith(
        f"/admin/crm/contact/{contact.pk}/erase/"
    )
    confirm = client.get(f"/admin/crm/contact/{contact.pk}/erase/")
    assert confirm.status_code == 200 and b"Type <strong>erase</strong>" in confirm.content
    refused = client.post(f"/admin/crm/contact/{contact.pk}/erase/", {"confirm": "yes"})
    assert refused.status_code == 200
    assert Contact.objects.get(pk=contact.pk).erased_at is None

    before = figures(contact)
    done = client.post(f"/admin/crm/contact/{contact.pk}/erase/", {"confirm": "erase"})
    assert done.status_code == 302
    assert_erased(contact, before)
    assert client.get(f"/admin/crm/contact/{contact.pk}/change/").status_code == 200


def test_admin_privacy_tools_need_their_permissions(client, contact):
    staff = User.objects.create_user("support", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_contact"))
    client.force_login(staff)
    page = client.get(f"/admin/crm/contact/{contact.pk}/change/")
    assert page.status_code == 200 and b"Export data" not in page.content
    assert client.get(f"/admin/crm/contact/{contact.pk}/export/").status_code == 403
    assert client.get(f"/admin/crm/contact/{contact.pk}/erase/").status_code == 403
    assert (
        client.post(f"/admin/crm/contact/{contact.pk}/erase/", {"confirm": "erase"}).status_code
        == 403
    )
    assert Contact.objects.get(pk=contact.pk).erased_at is None

    staff.user_permissions.add(
        Permission.objects.get(codename="export_contact"),
        Permission.objects.get(codename="erase_contact"),
    )
    staff = User.objects.get(pk=staff.pk)  # permissions are cached on the instance
    client.force_login(staff)
    assert client.get(f"/admin/crm/contact/{contact.pk}/export/").status_code == 200
    assert (
        client.post(f"/admin/crm/contact/{contact.pk}/erase/", {"confirm": "erase"}).status_code
        == 302
    )
    assert Contact.objects.get(pk=contact.pk).erased_at is not None


def test_a_new_suppression_of_an_erased_address_is_the_same_one(api, contact):
    from campaigns.services.delivery import suppression_create

    api.delete(f"/api/v1/contacts/{contact.pk}/")
    row, created = suppression_create(email=EMAIL, reason="manual")
    assert not created and row.email == ""
