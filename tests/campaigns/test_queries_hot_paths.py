"""Exact query counts on the campaign hot paths, for a batch of 1 and of 100: the engine's
batch advance (wait, condition, send_email), a broadcast batch and messages_send.

The data comes the way production feeds it: contacts in several time zones with consent,
"Checkout Started" events ingested in one batch, enrolments made by the trigger scan and
advanced by it through their first step, a broadcast whose audience is frozen by
broadcast_start. Only the path itself runs inside the counted block: follow-up tasks are
dispatched on commit, and the test's transaction never commits, so they stay out.

Counts include the SAVEPOINT / RELEASE SAVEPOINT pair an atomic service takes inside the
test's transaction (a BEGIN / COMMIT in production, which Django does not log)."""

from datetime import timedelta
from decimal import Decimal

import factory
import pytest
import time_machine
from django.core import mail
from django.db import connection

from campaigns.models import (
    Broadcast,
    BroadcastRecipient,
    Campaign,
    EmailTemplate,
    Enrollment,
    Message,
    StepRun,
)
from campaigns.services.broadcasts import (
    broadcast_recipients_send,
    broadcast_schedule,
    broadcast_start,
)
from campaigns.services.definitions import campaign_publish
from campaigns.services.engine import enrollments_advance
from campaigns.services.sending import SEND_CHUNK, messages_send
from campaigns.services.triggers import triggers_scan
from crm.models import Contact, Product, Segment
from crm.services.consent import consent_record
from crm.services.contacts import Identity
from crm.services.events import EventIn, events_ingest
from crm.services.segments import segment_members_add, segment_save
from tests.campaigns.conftest import T0
from tests.factories import ContactFactory
from tests.queries import split_inserts

pytestmark = [pytest.mark.django_db, pytest.mark.quiet_hours]

SIZES = [1, 100]
# At the send (10:05 UTC on a Monday in March) quiet hours (21:00-08:00 local) hold New York
# (05:05) and Los Angeles (02:05); Paris, Tokyo and Kolkata may be mailed. Contact 0 is in
# Paris, so the batch of one is sent.
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Asia/Kolkata", "America/Los_Angeles"]
QUIET = {"America/New_York", "America/Los_Angeles"}
MESSAGE_COLUMNS, STEP_RUN_COLUMNS = 27, 9  # the columns of one row in their bulk INSERTs


def mailable(n: int) -> int:
    """How many of the first n contacts (zones in turn) are outside quiet hours at the send."""
    return sum(1 for i in range(n) if ZONES[i % len(ZONES)] not in QUIET)


def customers(n: int) -> list[Contact]:
    contacts = ContactFactory.create_batch(
        n, timezone=factory.Iterator(ZONES), created_at=T0, updated_at=T0
    )
    for contact in contacts:
        consent_record(contact=contact, status="granted", source="signup form")
    return contacts


@pytest.fixture
def catalog(db):
    for sku, name, price in [("SKU-1", "Kettle", "59"), ("SKU-2", "Teapot", "35")]:
        Product.objects.create(product_id=sku, name=name, price=Decimal(price), currency="USD")


CART_HTML = (
    "<p>Hi {{ first_name }}</p>{% for item in event.properties.items %}"
    "<p>{{ item.name }} {{ item.price }}</p>{% endfor %}"
)
PICKS_HTML = (
    "{% load keepers %}" + CART_HTML + "{% recommendations 3 as picks %}"
    "{% for p in picks %}<p>{{ p.name }}</p>{% endfor %}"
)


def cart_campaign(steps: list[dict], html: str = CART_HTML) -> Campaign:
    EmailTemplate.objects.create(
        name="cart",
        subject="You left something behind, {{ first_name }}",
        category=EmailTemplate.Category.MARKETING,
        html_body=html,
    )
    campaign = Campaign.objects.create(
        name="Abandoned cart",
        trigger={"type": "event", "name": "Checkout Started"},
        reentry="always",
        steps=[
            {"id": "wait-1h", "type": "wait", "config": {"hours": 1}, "next": steps[0]["id"]},
            *steps,
        ],
    )
    campaign_publish(campaign=campaign)
    return campaign


def checkouts(contacts: list[Contact], clock) -> list[int]:
    """Every contact starts a checkout in one ingested batch; the trigger scan enrols them
    and advances them through the first hour's wait. Returns the enrolments, due at T0+1h."""
    events_ingest(
        [
            EventIn(
                name="Checkout Started",
                identity=Identity(email=c.email),
                properties={
                    "cart_id": f"cart-{c.pk}",
                    "products": [
                        {"product_id": "SKU-1", "quantity": 1},
                        {"product_id": "SKU-2", "quantity": 2},
                    ],
                },
                occurred_at=T0,
                message_id=f"checkout-{c.pk}",
            )
            for c in contacts
        ]
    )
    clock.shift(timedelta(seconds=10))
    triggers_scan()
    ids = list(Enrollment.objects.order_by("pk").values_list("pk", flat=True))
    assert len(ids) == len(contacts)
    assert not Enrollment.objects.filter(current_step="wait-1h").exists()
    clock.shift(timedelta(hours=1, minutes=5) - timedelta(seconds=10))
    return ids


# --- the engine's batch advance -----------------------------------------------------------
# Every advance costs, whatever the batch: savepoint, lock the enrolments (FOR UPDATE SKIP
# LOCKED), their versions, their campaigns, one bulk INSERT of StepRuns, one write-back of
# the enrolments (UPDATE … FROM unnest on PostgreSQL; bulk_update elsewhere, one statement
# up to 111 enrolments), release.
def advance(step_runs: int) -> int:
    return 7 + split_inserts(step_runs, STEP_RUN_COLUMNS)


@pytest.mark.parametrize("n", SIZES)
def test_a_wait_step_advances_a_batch_in_constant_queries(n, django_assert_num_queries):
    with time_machine.travel(T0, tick=False) as clock:
        cart_campaign([{"id": "wait-1d", "type": "wait", "config": {"days": 1}, "next": None}])
        ids = checkouts(customers(n), clock)
        with django_assert_num_queries(advance(n)):  # a wait reads nothing
            result = enrollments_advance(ids=ids)
    assert result == {"advanced": n, "steps": n, "messages": 0}


@pytest.mark.parametrize("n", SIZES)
def test_a_condition_step_advances_a_batch_in_constant_queries(n, django_assert_num_queries):
    with time_machine.travel(T0, tick=False) as clock:
        cart_campaign(
            [
                {
                    "id": "bought",
                    "type": "condition",
                    "config": {
                        "kind": "event_since_enrollment",
                        "event": "Order Completed",
                        "match": "cart_id",
                    },
                    "yes": None,
                    "no": "wait-1d",
                },
                {"id": "wait-1d", "type": "wait", "config": {"days": 1}, "next": None},
            ]
        )
        contacts = customers(n)
        ids = checkouts(contacts, clock)
        # every other customer bought their cart meanwhile (the goal is not set, so the
        # condition decides); the rest go on to the wait
        events_ingest(
            [
                EventIn(
                    name="Order Completed",
                    identity=Identity(email=c.email),
                    properties={"cart_id": f"cart-{c.pk}", "order_id": f"o-{c.pk}"},
                    occurred_at=T0 + timedelta(minutes=30),
                    message_id=f"order-{c.pk}",
                )
                for c in contacts[::2]
            ]
        )
        bought = len(contacts[::2])
        runs = n + (n - bought)  # the condition, then the wait for those who did not buy
        # + the matching events of the batch's contacts, + the trigger events (for cart_id)
        with django_assert_num_queries(advance(runs) + 2):
            result = enrollments_advance(ids=ids)
    assert result == {"advanced": n, "steps": runs, "messages": 0}
    assert Enrollment.objects.filter(status="completed").count() == bought


@pytest.mark.parametrize("n", SIZES)
def test_a_send_step_advances_a_batch_in_constant_queries(n, catalog, django_assert_num_queries):
    with time_machine.travel(T0, tick=False) as clock:
        cart_campaign(
            [
                {"id": "reminder", "type": "send_email", "config": {"template": "cart"}},
            ]
        )
        ids = checkouts(customers(n), clock)
        sent = mailable(n)
        # + the template, the trigger events, the catalog rows of their items, the
        # contacts, the send policy's marketing sends of the week and the preferences, and
        # one bulk INSERT of the messages (which SQLite splits under 999 parameters)
        with django_assert_num_queries(
            advance(sent) + 6 + 1 + split_inserts(sent, MESSAGE_COLUMNS)
        ):
            result = enrollments_advance(ids=ids)
    assert result == {"advanced": n, "steps": sent, "messages": sent}
    # the quiet zones stay on the step until 08:00 local, nothing sent yet
    held = Enrollment.objects.filter(current_step="reminder", status="active")
    assert held.count() == n - sent
    assert StepRun.objects.filter(step_id="reminder").count() == sent
    assert "Kettle" in Message.objects.first().html


@pytest.mark.parametrize("n", SIZES)
def test_a_send_step_with_recommendations_costs_one_query_per_contact_with_a_cart(
    n, catalog, django_assert_num_queries
):
    with time_machine.travel(T0, tick=False) as clock:
        Product.objects.create(product_id="SKU-3", name="Mugs", price=Decimal("12"))
        cart_campaign(
            [{"id": "reminder", "type": "send_email", "config": {"template": "cart"}}],
            html=PICKS_HTML,
        )
        ids = checkouts(customers(n), clock)
        sent = mailable(n)
        # the send step's queries as above, + the Recommender's batch reads (order lines,
        # recent views, catalog rows of the carts, ranked bestsellers), + one co-purchase
        # query per contact: by design (crm.services.recommendations.Recommender) each
        # contact with a cart or a purchase costs one, since what goes with their cart is
        # theirs alone. Every contact is rendered, those quiet hours hold too: the step
        # renders before it asks the send policy.
        with django_assert_num_queries(
            advance(sent) + 6 + 1 + split_inserts(sent, MESSAGE_COLUMNS) + 4 + n
        ):
            result = enrollments_advance(ids=ids)
    assert result == {"advanced": n, "steps": sent, "messages": sent}


# --- a broadcast batch --------------------------------------------------------------------
def newsletter(contacts: list[Contact]) -> Broadcast:
    """A shop-time broadcast (10:05 UTC) to a static list, scheduled and its audience
    frozen as the tick does it. Returns it with its recipients pending and due."""
    template = EmailTemplate.objects.create(
        name="newsletter",
        subject="News for you, {{ first_name }}",
        category=EmailTemplate.Category.MARKETING,
        html_body="<p>Hi {{ first_name }}, here is what is new.</p>",
    )
    segment = segment_save(name="Newsletter", kind=Segment.Kind.STATIC)
    segment_members_add(segment=segment, contact_ids=[c.pk for c in contacts])
    broadcast = Broadcast.objects.create(
        name="March news",
        template=template,
        segment=segment,
        send_date=T0.date(),
        send_time=(T0 + timedelta(hours=1, minutes=5)).time(),
    )
    broadcast_schedule(broadcast=broadcast, now=T0)
    assert broadcast_start(broadcast_id=broadcast.pk, now=T0 + timedelta(hours=1, minutes=5))
    return broadcast


# savepoint, the batch's broadcasts, their rows FOR SHARE (PostgreSQL only), the broadcasts
# with template and topic, the recipients FOR UPDATE SKIP LOCKED with their contacts, the
# send policy's week of marketing sends and the preferences, suppressions and consents (per
# broadcast in the batch: one here), one bulk INSERT of the messages, one write-back of the
# recipients (queued, or held until their quiet hours end), release
def broadcast_batch(messages: int) -> int:
    share_lock = 1 if connection.vendor == "postgresql" else 0
    return 11 + share_lock + split_inserts(messages, MESSAGE_COLUMNS)


@pytest.mark.parametrize("n", SIZES)
def test_a_broadcast_batch_is_sent_in_constant_queries(n, django_assert_num_queries):
    with time_machine.travel(T0, tick=False) as clock:
        broadcast = newsletter(customers(n))
        clock.shift(timedelta(hours=1, minutes=5))
        ids = list(broadcast.recipients.order_by("pk").values_list("pk", flat=True))
        sent = mailable(n)
        with django_assert_num_queries(broadcast_batch(sent)):
            counts = broadcast_recipients_send(ids=ids)
    assert counts == {"queued": sent, "skipped": 0, "held": n - sent}
    statuses = dict(
        BroadcastRecipient.objects.filter(broadcast=broadcast)
        .values_list("contact__timezone", "status")
        .distinct()
    )
    assert all((status == "pending") == (zone in QUIET) for zone, status in statuses.items())


# --- messages_send ------------------------------------------------------------------------
def queued_reminders(n: int, clock) -> list[int]:
    """n reminders queued by the engine's send step, as the batch advance leaves them."""
    cart_campaign([{"id": "reminder", "type": "send_email", "config": {"template": "cart"}}])
    ids = checkouts(customers(n), clock)
    enrollments_advance(ids=ids)
    queued = list(Message.objects.order_by("pk").values_list("pk", flat=True))
    assert len(queued) == n
    return queued


# per chunk of SEND_CHUNK: claim (UPDATE … RETURNING), load the claimed messages with
# contact and version, suppressions, consents, and one UPDATE per outcome in the chunk
CHUNK = 4


def chunks(n: int) -> int:
    return -(-n // SEND_CHUNK)


@pytest.mark.parametrize("n", SIZES)
def test_messages_are_sent_in_constant_queries_per_chunk(
    n, catalog, settings, django_assert_num_queries
):
    settings.KEEPERS_QUIET_HOURS = []  # every reminder queued at once
    with time_machine.travel(T0, tick=False) as clock:
        ids = queued_reminders(n, clock)
        # the queued ids, then per chunk its statements and the one "sent" UPDATE
        with django_assert_num_queries(1 + chunks(n) * (CHUNK + 1)):
            counts = messages_send(ids=ids)
    assert counts == {"sent": n, "skipped": 0, "failed": 0}
    assert len(mail.outbox) == n


def test_a_chunk_with_every_outcome_marks_each_outcome_in_one_statement(
    catalog, settings, monkeypatch, django_assert_num_queries
):
    from anymail.backends.test import EmailBackend

    settings.KEEPERS_QUIET_HOURS = []
    with time_machine.travel(T0, tick=False) as clock:
        ids = queued_reminders(100, clock)
        messages = list(Message.objects.filter(pk__in=ids).order_by("pk"))
        # between the queueing and the send, every fifth contact unsubscribes
        for message in messages[::5]:
            consent_record(contact=message.contact, status="withdrawn", source="preference center")
        refused = {m.to_email for m in messages[1::5]}
        send = EmailBackend.send_messages

        def refuse_some(self, emails):  # the ESP's API refuses these addresses
            if emails[0].to[0] in refused:
                raise RuntimeError("ESP says no")
            return send(self, emails)

        monkeypatch.setattr(EmailBackend, "send_messages", refuse_some)
        with django_assert_num_queries(1 + 2 * (CHUNK + 3)):
            counts = messages_send(ids=ids)
    assert counts == {"sent": 60, "skipped": 20, "failed": 20}
    marked = {m.to_email: m for m in Message.objects.all()}
    for message in messages[::5]:
        assert marked[message.to_email].status == "skipped"
        assert marked[message.to_email].error == "no marketing consent"
    for email in refused:
        assert (marked[email].status, marked[email].error) == ("failed", "ESP says no")
    sent = [m for m in marked.values() if m.status == "sent"]
    assert len({m.esp_message_id for m in sent}) == 60 and all(m.sent_at for m in sent)
