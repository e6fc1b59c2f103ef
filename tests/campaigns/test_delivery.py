"""Delivery tracking: ESP webhooks (through Anymail) update messages, feed engagement
events and the suppression list; suppressed addresses are skipped at send time.

The payloads in payloads/<esp>/ are shaped like what each ESP posts (SES: an SNS
notification wrapping an SES event); their message ids match the messages `sent` makes."""

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core import mail

from campaigns.models import DeliveryEvent, Message, Suppression
from campaigns.services.delivery import suppression_create, suppression_lift
from campaigns.services.sending import messages_send
from crm.errors import KeepersError
from crm.models import ConsentRecord, Event
from crm.selectors import consent_current
from tests.campaigns.conftest import T0, shopper

pytestmark = pytest.mark.django_db

PAYLOADS = Path(__file__).parent / "payloads"
SECRET = "dev:dev"
MAILGUN_SIGNING_KEY = "test-mailgun-webhook-signing-key"
CLICKED_URL = "https://shop.example/products/blue-mug?utm_source=keepers"
AT = {
    "delivered": datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC),
    "opened": datetime(2026, 3, 2, 9, 12, 0, tzinfo=UTC),
    "clicked": datetime(2026, 3, 2, 9, 13, 30, tzinfo=UTC),
    "bounced": datetime(2026, 3, 2, 9, 0, 7, tzinfo=UTC),
    "complained": datetime(2026, 3, 2, 10, 30, 0, tzinfo=UTC),
}
# Per ESP: Anymail's esp_name and the ESP's message ids for Ada (delivered, opened,
# clicked), Bo (bounced) and Cy (complained), as the ESP's send API returned them.
ESPS = {
    "amazon_ses": (
        "Amazon SES",
        {
            "ada": "0100018e0b7a6f1c-3c2d8e4a-6b1f-4d7e-9a2c-5e8f1b3d7c60-000000",
            "bo": "0100018e0b7a6f1d-8d4e2a1b-7c3f-4e9a-b5d6-1f2e3a4b5c6d-000000",
            "cy": "0100018e0b7a6f1e-2b9c7d5e-1a4f-4c8b-9e3d-6a7b8c9d0e1f-000000",
        },
    ),
    "postmark": (
        "Postmark",
        {
            "ada": "8d5c1a3e-2f4b-4c6d-9e8f-1a2b3c4d5e6f",
            "bo": "9e6d2b4f-3a5c-4d7e-8f90-2b3c4d5e6f70",
            "cy": "af7e3c50-4b6d-4e8f-9a01-3c4d5e6f7081",
            "di": "b08f4d61-5c7e-4f90-8b12-4d5e6f708192",
        },
    ),
    "mailgun": (
        "Mailgun",
        {
            "ada": "<20260302090003.1.A1B2C3D4E5F60718@mg.shop.example>",
            "bo": "<20260302090003.1.B2C3D4E5F6071829@mg.shop.example>",
            "cy": "<20260302090003.1.C3D4E5F60718293A@mg.shop.example>",
        },
    ),
    "brevo": (
        "Brevo",
        {
            "ada": "<202603020900.10000000001@smtp-relay.mailin.fr>",
            "bo": "<202603020900.10000000002@smtp-relay.mailin.fr>",
            "cy": "<202603020900.10000000003@smtp-relay.mailin.fr>",
        },
    ),
}
KINDS = ["delivered", "opened", "clicked", "bounced", "complained"]


def basic_auth(secret: str) -> str:
    return "Basic " + base64.b64encode(secret.encode()).decode()


def payload(esp: str, kind: str) -> dict:
    return json.loads((PAYLOADS / esp / f"{kind}.json").read_text())


def mailgun_sign(data: dict, key: str = MAILGUN_SIGNING_KEY) -> dict:
    """Mailgun signs timestamp + token with HMAC-SHA256 under the webhook signing key."""
    signed = copy.deepcopy(data)
    block = signed["signature"]
    block["signature"] = hmac.new(
        key.encode(), f"{block['timestamp']}{block['token']}".encode(), hashlib.sha256
    ).hexdigest()
    return signed


def post(client, esp: str, data: dict, *, auth: str | None = SECRET, signing_key=None):
    headers = {"HTTP_AUTHORIZATION": basic_auth(auth)} if auth else {}
    content_type = "application/json"
    if esp == "amazon_ses":
        # SNS posts JSON as text/plain and repeats the type and id in headers (Anymail
        # checks that they match the body).
        content_type = "text/plain; charset=UTF-8"
        headers["HTTP_X_AMZ_SNS_MESSAGE_TYPE"] = data["Type"]
        headers["HTTP_X_AMZ_SNS_MESSAGE_ID"] = data["MessageId"]
    elif esp == "mailgun":
        data = mailgun_sign(data, signing_key or MAILGUN_SIGNING_KEY)
    return client.post(
        f"/anymail/{esp}/tracking/", data=json.dumps(data), content_type=content_type, **headers
    )


def post_kind(client, esp: str, kind: str):
    response = post(client, esp, payload(esp, kind))
    assert response.status_code == 200, response.content
    return response


@pytest.fixture
def webhooks(settings, monkeypatch):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": SECRET,
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY,
    }
    try:
        import boto3  # noqa: F401
    except ImportError:
        # Anymail's SES webhook view reads its boto3 client settings when it is created,
        # and boto3 (the amazon-ses extra) is not installed here. boto3 is only used to
        # confirm SNS subscriptions (a call to AWS), never for tracking notifications.
        monkeypatch.setattr(
            "anymail.webhooks.amazon_ses._get_anymail_boto3_params",
            lambda kwargs=None: ({}, {}),
        )


@pytest.fixture(params=list(ESPS))
def esp(request, webhooks):
    return request.param


def message_to(contact, esp_message_id: str, *, key: str, **fields) -> Message:
    values = {
        "category": "marketing",
        "subject": "Your cart misses you",
        "status": Message.Status.SENT,
        "created_at": T0,
        "sent_at": T0,
        "to_email": contact.email,
        **fields,
    }
    return Message.objects.create(
        contact=contact, idempotency_key=key, esp_message_id=esp_message_id, **values
    )


@pytest.fixture
def sent(esp):
    """One sent message per person, with the ids the ESP gave them."""
    _, ids = ESPS[esp]
    return {
        name: message_to(shopper(f"{name}@example.com"), esp_id, key=f"{esp}-{name}")
        for name, esp_id in ids.items()
    }


def reloaded(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)


def state() -> dict:
    return {
        "delivery_events": list(DeliveryEvent.objects.order_by("pk").values()),
        "messages": list(Message.objects.order_by("pk").values()),
        "suppressions": list(Suppression.objects.order_by("pk").values()),
        "crm_events": list(Event.objects.order_by("pk").values("pk", "name", "message_id")),
        "consent": list(ConsentRecord.objects.order_by("pk").values("pk", "status")),
    }


def test_delivery_open_and_click_update_the_message(client, esp, sent):
    for kind in ["delivered", "opened", "clicked"]:
        post_kind(client, esp, kind)

    ada = reloaded(sent["ada"])
    assert ada.delivered_at == AT["delivered"]
    assert ada.opened_at == AT["opened"]
    assert ada.clicked_at == AT["clicked"]
    assert ada.delivery_status == "delivered"
    click = DeliveryEvent.objects.get(message=ada, event_type="clicked")
    assert click.url == CLICKED_URL
    assert click.esp_name == ESPS[esp][0]
    assert click.recipient == "ada@example.com"
    assert sorted(
        DeliveryEvent.objects.filter(message=ada).values_list("event_type", flat=True)
    ) == [
        "clicked",
        "delivered",
        "opened",
    ]


def test_opens_and_clicks_become_crm_events_for_the_contact(client, esp, sent):
    post_kind(client, esp, "opened")
    post_kind(client, esp, "clicked")

    ada = sent["ada"]
    opened = Event.objects.get(contact=ada.contact, name="Email Opened")
    assert opened.occurred_at == AT["opened"]
    assert opened.source == "esp"
    assert opened.properties == {"message_id": ada.pk, "campaign_id": None, "step_id": ""}
    event = DeliveryEvent.objects.get(message=ada, event_type="opened")
    assert opened.message_id == f"{ESPS[esp][0]}:{event.event_id}"
    clicked = Event.objects.get(contact=ada.contact, name="Email Clicked")
    assert clicked.properties["url"] == CLICKED_URL
    assert clicked.occurred_at == AT["clicked"]


def test_hard_bounce_suppresses_the_address(client, esp, sent):
    post_kind(client, esp, "bounced")

    bo = reloaded(sent["bo"])
    assert bo.delivery_status == "bounced"
    assert bo.bounced_at == AT["bounced"]
    suppression = Suppression.objects.get(email="bo@example.com")
    assert suppression.reason == Suppression.Reason.HARD_BOUNCE
    assert suppression.source == f"{ESPS[esp][0]} webhook"
    assert suppression.lifted_at is None


def test_complaint_suppresses_and_withdraws_consent(client, esp, sent):
    post_kind(client, esp, "complained")

    cy = reloaded(sent["cy"])
    assert cy.delivery_status == "complained"
    assert cy.complained_at == AT["complained"]
    assert Suppression.objects.get(email="cy@example.com").reason == Suppression.Reason.COMPLAINT
    assert consent_current(contact=cy.contact) == "withdrawn"


def test_the_same_payload_twice_changes_nothing_the_second_time(client, esp, sent):
    for kind in KINDS:
        post_kind(client, esp, kind)
    first = state()

    for kind in KINDS:
        post_kind(client, esp, kind)

    assert state() == first
    assert DeliveryEvent.objects.count() == len(KINDS)
    assert Suppression.objects.count() == 2  # Bo's bounce and Cy's complaint
    assert Event.objects.filter(name__in=["Email Opened", "Email Clicked"]).count() == 2


@pytest.mark.parametrize("auth", ["dev:wrong", None])
def test_a_wrong_or_missing_secret_is_refused(client, esp, sent, auth):
    before = state()

    for kind in KINDS:
        response = post(client, esp, payload(esp, kind), auth=auth)
        # SES answers a missing secret with 401 (SNS only sends credentials after one)
        assert 400 <= response.status_code < 500

    assert state() == before


def test_mailgun_refuses_a_wrong_signature(client, webhooks):
    response = post(
        client, "mailgun", payload("mailgun", "delivered"), signing_key="someone else's key"
    )

    assert response.status_code == 400
    assert not DeliveryEvent.objects.exists()


def test_an_event_for_an_unknown_message_is_stored_without_one(client, esp):
    for kind in KINDS:
        post_kind(client, esp, kind)

    events = DeliveryEvent.objects.all()
    assert len(events) == len(KINDS)
    assert all(event.message_id is None for event in events)
    assert ESPS[esp][1]["ada"].strip("<>") in {e.esp_message_id.strip("<>") for e in events}
    assert not Event.objects.filter(name__in=["Email Opened", "Email Clicked"]).exists()
    # the address is still suppressed: the bounce and the complaint are about it
    assert set(Suppression.objects.values_list("email", flat=True)) == {
        "bo@example.com",
        "cy@example.com",
    }


def test_events_out_of_order_keep_both_timestamps(client, esp, sent):
    post_kind(client, esp, "opened")
    post_kind(client, esp, "delivered")

    ada = reloaded(sent["ada"])
    assert ada.opened_at == AT["opened"]
    assert ada.delivered_at == AT["delivered"]
    assert ada.delivery_status == "delivered"


def test_the_first_open_stays_first(client, webhooks):
    ada = message_to(shopper("ada@example.com"), ESPS["postmark"][1]["ada"], key="ada")
    later = payload("postmark", "opened")
    later["ReceivedAt"] = "2026-03-02T10:00:00Z"
    earlier = payload("postmark", "opened")
    earlier["ReceivedAt"] = "2026-03-02T09:05:00Z"

    post_kind(client, "postmark", "opened")
    assert post(client, "postmark", later).status_code == 200
    assert reloaded(ada).opened_at == AT["opened"]

    # an earlier open, reported late
    assert post(client, "postmark", earlier).status_code == 200
    assert reloaded(ada).opened_at == datetime(2026, 3, 2, 9, 5, tzinfo=UTC)
    assert DeliveryEvent.objects.filter(event_type="opened").count() == 3


def test_delivery_status_never_regresses(client, webhooks):
    cy = message_to(shopper("cy@example.com"), ESPS["postmark"][1]["cy"], key="cy")
    delivered = payload("postmark", "delivered")
    delivered.update(MessageID=ESPS["postmark"][1]["cy"], Recipient="cy@example.com")

    post_kind(client, "postmark", "complained")
    assert post(client, "postmark", delivered).status_code == 200

    cy = reloaded(cy)
    assert cy.delivery_status == "complained"
    assert cy.delivered_at == AT["delivered"]
    assert cy.complained_at == AT["complained"]


def test_an_esp_unsubscribe_suppresses_and_withdraws_consent(client, webhooks):
    di = message_to(shopper("di@example.com"), ESPS["postmark"][1]["di"], key="di")

    post_kind(client, "postmark", "unsubscribed")

    di = reloaded(di)
    assert di.unsubscribed_at == AT["complained"]
    assert Suppression.objects.get(email="di@example.com").reason == "unsubscribed"
    assert consent_current(contact=di.contact) == "withdrawn"
    assert ConsentRecord.objects.get(contact=di.contact, status="withdrawn").source == (
        "Postmark unsubscribed"
    )


@pytest.mark.parametrize(
    ("esp_key", "kind"), [("amazon_ses", "bounced_transient"), ("brevo", "soft_bounce")]
)
def test_a_soft_bounce_reported_as_bounced_does_not_suppress(client, webhooks, esp_key, kind):
    """Anymail calls SES Transient and Brevo soft_bounce events "bounced"; Keepers records
    them as soft bounces."""
    bo = message_to(shopper("bo@example.com"), ESPS[esp_key][1]["bo"], key="bo")

    post_kind(client, esp_key, kind)

    bo = reloaded(bo)
    assert bo.delivery_status == "deferred"
    assert bo.bounced_at is None
    event = DeliveryEvent.objects.get(message=bo)
    assert event.event_type == "deferred"
    assert event.description.startswith("soft bounce: ")
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    ("esp_key", "change", "suppressed"),
    [
        ("postmark", {"Type": "BadEmailAddress", "TypeCode": 100000}, True),
        ("brevo", {"event": "blocked", "reason": "blocked : due to blacklist user"}, False),
    ],
)
def test_a_rejection_suppresses_only_when_the_address_is_at_fault(
    client, webhooks, esp_key, change, suppressed
):
    bo = message_to(shopper("bo@example.com"), ESPS[esp_key][1]["bo"], key="bo")
    data = {**payload(esp_key, "bounced"), **change}

    assert post(client, esp_key, data).status_code == 200

    assert reloaded(bo).delivery_status == "rejected"
    assert Suppression.objects.filter(email="bo@example.com").exists() is suppressed


def mailgun_event(kind: str, message_id: str, token: str, at: datetime) -> dict:
    """The Mailgun fixture of that kind, for another message, time and signature token."""
    data = payload("mailgun", kind)
    data["signature"].update(token=token, timestamp=str(int(at.timestamp())))
    event = data["event-data"]
    event.update(timestamp=at.timestamp(), recipient="bo@example.com")
    event["message"]["headers"].update(
        to="bo@example.com", **{"message-id": message_id.strip("<>")}
    )
    return data


def test_soft_bounces_suppress_after_the_limit_in_a_row(client, webhooks):
    bo = shopper("bo@example.com")
    ids = [f"<2026030209000{n}.1.SOFT@mg.shop.example>" for n in range(6)]
    for n, esp_id in enumerate(ids):
        message_to(bo, esp_id, key=f"bo-{n}")
    at = AT["bounced"]

    def report(kind: str, n: int, token: str, hours: float) -> None:
        data = mailgun_event(kind, ids[n], token, at + timedelta(hours=hours))
        assert post(client, "mailgun", data).status_code == 200

    # retries of one message are one soft bounce, however many attempts Mailgun reports
    for attempt in range(3):
        report("deferred", 0, f"retry-{attempt}", hours=attempt / 10)
    assert not Suppression.objects.exists()

    report("deferred", 1, "second", hours=1)
    report("delivered", 2, "delivered", hours=2)
    report("deferred", 3, "third", hours=3)
    report("deferred", 4, "fourth", hours=4)
    assert not Suppression.objects.exists()  # the delivery in between started a new run

    report("deferred", 5, "fifth", hours=5)
    suppression = Suppression.objects.get(email="bo@example.com")
    assert suppression.reason == Suppression.Reason.SOFT_BOUNCES
    assert suppression.source == "Mailgun webhook"


def test_the_soft_bounce_limit_is_a_setting(client, webhooks, settings):
    settings.KEEPERS_SOFT_BOUNCE_LIMIT = 1
    message_to(shopper("bo@example.com"), ESPS["mailgun"][1]["bo"], key="bo")

    post_kind(client, "mailgun", "deferred")

    assert Suppression.objects.get(email="bo@example.com").reason == "soft_bounces"


def queue(contact, *, key: str, category: str = "marketing", to_email: str | None = None):
    return message_to(
        contact,
        "",
        key=key,
        category=category,
        status=Message.Status.QUEUED,
        sent_at=None,
        to_email=to_email or contact.email,
        html="<p>Hi</p>",
        text="Hi",
    )


def test_a_suppressed_address_is_skipped_at_send_time(client, webhooks):
    bo = shopper("bo@example.com")
    message_to(bo, ESPS["postmark"][1]["bo"], key="bounced")
    post_kind(client, "postmark", "bounced")
    ada = shopper("ada@example.com")
    marketing = queue(bo, key="offer", to_email="Bo@Example.com")
    receipt = queue(bo, key="receipt", category="transactional")
    other = queue(ada, key="ada-offer")

    counts = messages_send(ids=[marketing.pk, receipt.pk, other.pk])

    assert counts == {"sent": 1, "skipped": 2, "failed": 0}
    for message in (marketing, receipt):
        message = reloaded(message)
        assert message.status == Message.Status.SKIPPED
        assert message.error == "suppressed: hard bounce"
    assert [m.to for m in mail.outbox] == [["ada@example.com"]]


def test_a_lifted_suppression_lets_mail_through_and_keeps_the_record(client, webhooks):
    bo = shopper("bo@example.com")
    suppression, created = suppression_create(
        email="Bo@Example.com", reason="hard_bounce", source="Postmark webhook"
    )
    assert created
    assert suppression_create(email="bo@example.com", reason="complaint") == (suppression, False)
    staff = User.objects.create_user("staff", is_staff=True)

    suppression_lift(suppression=suppression, user=staff, note="Typo fixed, confirmed by phone")
    counts = messages_send(ids=[queue(bo, key="after-lift").pk])

    assert counts["sent"] == 1
    suppression.refresh_from_db()
    assert suppression.lifted_by == staff
    assert suppression.lift_note == "Typo fixed, confirmed by phone"
    assert suppression.lifted_at is not None
    with pytest.raises(KeepersError):
        suppression_lift(suppression=suppression, user=staff, note="again")
    # a new bounce suppresses the address anew; the lifted row stays
    _, created = suppression_create(email="bo@example.com", reason="hard_bounce")
    assert created
    assert Suppression.objects.filter(email="bo@example.com").count() == 2


def test_sending_claims_and_marks_in_chunks_so_queries_do_not_grow_per_message(
    django_assert_max_num_queries,
):
    from campaigns.services.sending import SEND_CHUNK

    contacts = [shopper(f"c{i}@example.com") for i in range(SEND_CHUNK + 10)]
    ids = [queue(c, key=f"chunk-{c.pk}").pk for c in contacts]
    # per chunk: claim, load, suppressions, consents, mark; plus the first read
    with django_assert_max_num_queries(1 + 2 * 5):
        counts = messages_send(ids=ids)

    assert counts == {"sent": len(ids), "skipped": 0, "failed": 0}
    assert set(Message.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"sent"}
    assert all(m.esp_message_id for m in Message.objects.filter(pk__in=ids))
    assert len(mail.outbox) == len(ids)


def test_a_message_another_worker_claimed_is_not_sent_again():
    ada, bo = shopper("ada@example.com"), shopper("bo@example.com")
    taken = queue(ada, key="taken")
    free = queue(bo, key="free")
    Message.objects.filter(pk=taken.pk).update(status=Message.Status.SENDING)

    assert messages_send(ids=[taken.pk, free.pk]) == {"sent": 1, "skipped": 0, "failed": 0}
    assert messages_send(ids=[taken.pk, free.pk]) == {"sent": 0, "skipped": 0, "failed": 0}
    assert [m.to for m in mail.outbox] == [["bo@example.com"]]
    assert reloaded(taken).status == Message.Status.SENDING


def test_an_esp_error_fails_that_message_and_the_rest_of_the_chunk_goes_out(monkeypatch):
    from anymail.backends.test import EmailBackend

    ada, bo = shopper("ada@example.com"), shopper("bo@example.com")
    bad, good = queue(ada, key="bad"), queue(bo, key="good")
    send = EmailBackend.send_messages

    def refuse_ada(self, messages):
        if messages[0].to == ["ada@example.com"]:
            raise RuntimeError("ESP says no")
        return send(self, messages)

    monkeypatch.setattr(EmailBackend, "send_messages", refuse_ada)

    assert messages_send(ids=[bad.pk, good.pk]) == {"sent": 1, "skipped": 0, "failed": 1}
    assert reloaded(bad).status == Message.Status.FAILED
    assert reloaded(bad).error == "ESP says no"
    assert reloaded(good).status == Message.Status.SENT
