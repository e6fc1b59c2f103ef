"""ESP tracking webhooks refuse rather than warn: an ESP whose settings are missing answers
404 (not 500, not an unauthenticated 200), and each ESP that signs its webhooks has its
signature checked once its key is set — a signed complaint suppresses the address, a
forged or unsigned one is a 4xx that changes nothing.

The payloads are shaped as in django-anymail's own tests (tests/test_<esp>_webhooks.py)."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from svix.webhooks import Webhook as Svix

from campaigns.models import DeliveryEvent, Suppression
from crm.models import ConsentRecord
from crm.selectors import consent_current
from tests.campaigns.conftest import shopper
from tests.campaigns.test_delivery import (
    ESPS,
    SECRET,
    basic_auth,
    mailgun_sign,
    message_to,
    payload,
)

pytestmark = pytest.mark.django_db

ADDRESS = "cy@example.com"
KEYS = {
    "mailgun": ("MAILGUN_WEBHOOK_SIGNING_KEY", "mailgun-signing-key"),
    "resend": (
        "RESEND_SIGNING_SECRET",
        "whsec_" + base64.b64encode(b"resend-signing-secret").decode(),
    ),
    "mailersend": ("MAILERSEND_SIGNING_SECRET", "mailersend-signing-secret"),
    "mandrill": ("MANDRILL_WEBHOOK_KEY", "mandrill-webhook-key"),
}
# The id each ESP's send API gave the message the complaint is about
MESSAGE_IDS = {
    "mailgun": ESPS["mailgun"][1]["cy"],
    "resend": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "mailersend": "62fb66bef54a112e920b5493",
    "mandrill": "abcdef012345789abcdef0",
}
URLS = {
    "mailgun": "/anymail/mailgun/tracking/",
    "resend": "/anymail/resend/tracking/",
    "mailersend": "/anymail/mailersend/tracking/",
    "mandrill": "/anymail/mandrill/",
}


def complaint(esp: str) -> dict | list:
    """A spam complaint about ADDRESS, as each ESP posts it."""
    if esp == "mailgun":
        return payload("mailgun", "complained")
    if esp == "resend":
        return {
            "created_at": "2026-03-02T10:30:00.690Z",
            "data": {
                "created_at": "2026-03-02T10:30:00.241Z",
                "email_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                "from": "Shop <shop@example.com>",
                "subject": "Your cart misses you",
                "to": [ADDRESS],
            },
            "type": "email.complained",
        }
    if esp == "mailersend":
        return {
            "type": "activity.spam_complaint",
            "data": {
                "id": "62f114f8165fe0d8db0288e5",
                "type": "spam_complaint",
                "created_at": "2026-03-02T10:30:00.747000Z",
                "email": {
                    "status": "delivered",
                    "message": {"id": "62fb66bef54a112e920b5493"},
                    "recipient": {"email": ADDRESS},
                },
                "morph": {"object": "spam_complaint", "reason": None},
            },
        }
    return [
        {
            "event": "spam",
            "msg": {"ts": 1772447400, "email": ADDRESS, "_id": "abcdef012345789abcdef0"},
            "_id": "abcdef012345789abcdef0",
            "ts": 1772447460,
        }
    ]


def post_signed(client, esp: str, data, *, key: str | None, auth: str | None = SECRET):
    """POST as the ESP does, signed with `key` (None: no signature at all)."""
    headers = {"HTTP_AUTHORIZATION": basic_auth(auth)} if auth else {}
    url = URLS[esp]
    if esp == "mandrill":
        events = json.dumps(data)
        if key:
            # Mandrill signs the exact URL it calls (with the basic auth) + sorted params
            signed = f"http://{auth}@testserver{url}" if auth else f"http://testserver{url}"
            digest = hmac.new(
                key.encode(), f"{signed}mandrill_events{events}".encode(), hashlib.sha1
            ).digest()
            headers["HTTP_X_MANDRILL_SIGNATURE"] = base64.b64encode(digest).decode()
        return client.post(url, data={"mandrill_events": events}, **headers)
    if esp == "mailgun":
        data = mailgun_sign(data, key) if key else data
    body = json.dumps(data)
    if esp == "resend":
        headers["HTTP_SVIX_ID"] = "msg_abcdefghijklmnopqrst12345"
        if key:
            now = datetime.now(tz=UTC)
            headers["HTTP_SVIX_TIMESTAMP"] = str(int(now.timestamp()))
            headers["HTTP_SVIX_SIGNATURE"] = Svix(key).sign(
                msg_id=headers["HTTP_SVIX_ID"], timestamp=now, data=body
            )
    if esp == "mailersend" and key:
        headers["HTTP_SIGNATURE"] = hmac.new(
            key.encode(), body.encode(), hashlib.sha256
        ).hexdigest()
    return client.post(url, data=body, content_type="application/json", **headers)


@pytest.fixture
def configured(settings):
    """Production's shape: the shared basic-auth secret plus every ESP's signing key."""
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, **dict(KEYS.values())}


def customer(esp: str):
    """Cy, who consented and was sent the message the complaint is about."""
    contact = shopper(ADDRESS)
    message_to(contact, MESSAGE_IDS.get(esp, "postmark-id"), key=f"cy-{esp}")
    return contact


def state():
    return (
        list(DeliveryEvent.objects.values_list("event_type", "recipient")),
        list(Suppression.objects.values_list("email", flat=True)),
        ConsentRecord.objects.count(),
    )


@pytest.mark.parametrize("esp", list(KEYS))
def test_a_correctly_signed_complaint_is_accepted(client, configured, esp):
    contact = customer(esp)

    response = post_signed(client, esp, complaint(esp), key=KEYS[esp][1])

    assert response.status_code == 200, response.content
    assert DeliveryEvent.objects.get().event_type == "complained"
    assert list(Suppression.objects.values_list("email", flat=True)) == [ADDRESS]
    assert consent_current(contact=contact) == "withdrawn"


@pytest.mark.parametrize("signature", ["forged", "missing"])
@pytest.mark.parametrize("esp", list(KEYS))
def test_a_forged_or_unsigned_complaint_changes_nothing(client, configured, esp, signature):
    customer(esp)
    before = state()

    key = "someone else's key" if signature == "forged" else None
    if esp == "resend" and key:
        key = "whsec_" + base64.b64encode(key.encode()).decode()
    response = post_signed(client, esp, complaint(esp), key=key)

    assert 400 <= response.status_code < 500, response.content
    assert state() == before


@pytest.mark.parametrize("esp", ["mailgun", "mailersend", "mandrill"])
def test_an_esp_whose_key_is_not_set_answers_404(client, settings, esp):
    # These ESPs have no other check than their signature (Resend's is optional beside
    # basic auth). Mailgun's signing key falls back to its API key: neither is set here.
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}
    customer(esp)
    before = state()

    response = post_signed(client, esp, complaint(esp), key=KEYS[esp][1])

    assert response.status_code == 404
    assert state() == before


@pytest.mark.parametrize(
    "url", ["/anymail/postmark/tracking/", "/anymail/brevo/tracking/", "/anymail/resend/tracking/"]
)
def test_without_a_webhook_secret_the_endpoints_refuse_unauthenticated_events(
    client, settings, url
):
    # Anymail would only warn (AnymailInsecureWebhookWarning) and accept anyone's events
    settings.ANYMAIL = {}
    customer("postmark")
    before = state()

    response = client.post(
        url, data=json.dumps(payload("postmark", "complained")), content_type="application/json"
    )

    assert response.status_code == 404
    assert state() == before


def test_mandrill_can_still_verify_its_url_before_it_shows_the_key(client, settings):
    # Mandrill sends an unsigned HEAD when the webhook is added, then shows the key
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}

    assert client.head(URLS["mandrill"], HTTP_AUTHORIZATION=basic_auth(SECRET)).status_code == 200


@pytest.mark.parametrize("body", ["", "not json", "[]", "{}", '{"signature": 1}', "[1]"])
@pytest.mark.parametrize("esp", list(KEYS))
def test_junk_is_refused_without_a_500(client, configured, esp, body):
    customer(esp)
    before = state()

    response = client.post(
        URLS[esp], data=body, content_type="application/json", HTTP_AUTHORIZATION=basic_auth(SECRET)
    )

    assert 400 <= response.status_code < 500, response.content
    assert state() == before
