import re
from datetime import UTC, datetime

import pytest
from django.core import mail

from campaigns.models import Campaign, EmailTemplate
from campaigns.services.definitions import campaign_publish
from campaigns.services.engine import engine_tick
from campaigns.services.triggers import triggers_scan
from crm.services.consent import consent_record
from crm.services.contacts import Identity, contact_create
from crm.services.events import EventIn, events_ingest

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """One engine cycle, as beat would run it: triggers, then the tick (tasks are eager)."""

    def cycle():
        for _ in range(3):
            with django_capture_on_commit_callbacks(execute=True):
                triggers_scan()
            with django_capture_on_commit_callbacks(execute=True):
                engine_tick()

    return cycle


@pytest.fixture
def templates(db):
    made = {}
    for name, subject in [
        ("cart-1", "You left something behind, {{ first_name }}"),
        ("cart-2", "Free shipping on your cart"),
        ("cart-3", "10% off your cart"),
        ("welcome", "Welcome!"),
        ("receipt", "Your receipt"),
    ]:
        made[name] = EmailTemplate.objects.create(
            name=name,
            subject=subject,
            category="transactional" if name == "receipt" else "marketing",
            html_body="<p>Hi {{ first_name }}</p>{% for item in event.properties.items %}<p>{{ item.name }}</p>{% endfor %}",
        )
    return made


@pytest.fixture
def abandoned_cart(templates):
    campaign = Campaign.objects.create(
        name="Abandoned cart",
        trigger={"type": "event", "name": "Checkout Started"},
        reentry="always",
        goals=[{"event": "Order Completed", "match": "cart_id"}],
        steps=[
            {"id": "wait-1h", "type": "wait", "config": {"hours": 1}, "next": "reminder"},
            {
                "id": "reminder",
                "type": "send_email",
                "config": {"template": "cart-1"},
                "next": "wait-1d",
            },
            {"id": "wait-1d", "type": "wait", "config": {"days": 1}, "next": "bought-1"},
            {
                "id": "bought-1",
                "type": "condition",
                "config": {
                    "kind": "event_since_enrollment",
                    "event": "Order Completed",
                    "match": "cart_id",
                },
                "yes": None,
                "no": "free-shipping",
            },
            {
                "id": "free-shipping",
                "type": "send_email",
                "config": {"template": "cart-2"},
                "next": "wait-2d",
            },
            {"id": "wait-2d", "type": "wait", "config": {"days": 2}, "next": "bought-2"},
            {
                "id": "bought-2",
                "type": "condition",
                "config": {
                    "kind": "event_since_enrollment",
                    "event": "Order Completed",
                    "match": "cart_id",
                },
                "yes": None,
                "no": "discount",
            },
            {"id": "discount", "type": "send_email", "config": {"template": "cart-3"}},
        ],
    )
    campaign_publish(campaign=campaign)
    return campaign


FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


def form_token(client, **headers) -> str:
    """The token the subscribe page (or its iframe) was served with, as a browser would
    post it back ("" from a page without one)."""
    found = FORM_TOKEN.search(client.get("/subscribe/", **headers).content.decode())
    return found.group(1) if found else ""


def shopper(email: str, first_name: str = "Sam", timezone: str = "Europe/Paris", **fields):
    contact = contact_create(email=email, first_name=first_name, timezone=timezone, **fields)
    consent_record(contact=contact, status="granted", source="test")
    return contact


def track(email: str, name: str, at: datetime, message_id: str, **properties):
    events_ingest(
        [
            EventIn(
                name=name,
                identity=Identity(email=email),
                properties=properties,
                occurred_at=at,
                message_id=message_id,
            )
        ]
    )


def sent_to(email: str) -> list[str]:
    return [m.subject for m in mail.outbox if m.to == [email]]


def template_form(**fields) -> dict:
    """The email template admin form's POST, with its (empty) language versions."""
    return {
        "name": "news",
        "category": "marketing",
        "language": "en",
        "format": "html",
        "subject": "News",
        "preheader": "",
        "reply_to": "",
        "mjml_body": "",
        "html_body": "<p>x</p>",
        "text_body": "",
        "topic": "",
        "variants-TOTAL_FORMS": "0",
        "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "0",
        "variants-MAX_NUM_FORMS": "1000",
        **fields,
    }
